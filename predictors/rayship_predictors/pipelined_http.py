"""HTTP/1.1 POSTs pipelined over a few short-lived connections: the prediction log's transport.

Logging every prediction as CloudEvents means two POSTs per inference request, and KServe's
receivers take one event per POST. Through aiohttp's client each POST cost the replica about
200 us of CPU (a request object, a response object, a connection handed out and back per
POST), as much as a small model's whole request; bench/observability_bench.py measured
logging at half of the throughput. Here a batch's POSTs are written to each connection in one
go and the answers read back as they come, parsed by httptools (the C parser under uvicorn,
which Serve's HTTP servers use): a few microseconds per POST beyond building its head.

Each `post_all` opens its connections and closes them when done, so nothing stays open
between batches (a receiver that is replaced or stopped needs no closing here). A receiver
that closes a connection after an answer (`Connection: close`) is sent the rest on a new one;
one that stops answering for `timeout_s`, or cannot be reached, leaves the rest unanswered,
each with the reason, for the caller to retry. What is sent must be answered in order, as
HTTP/1.1 requires of every server.
"""

from __future__ import annotations

import asyncio
import functools
import math
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

HTTP_PORTS = {"http": 80, "https": 443}
READ_INTERVAL_SECONDS = 0.01
"""How often a connection reads its answers: receivers write each answer as they finish it, and
reading each as it comes cost a wake-up of the replica's event loop per POST (about 30 us,
a third of the sink's CPU); reading at most this often takes whatever has arrived at once."""


@dataclass(frozen=True)
class Post:
    """One POST: its headers (besides Host and Content-Length) and its body."""

    headers: Mapping[str, str]
    body: bytes


Answer = int | str
"""A POST's status code, or why it got none (it may be sent again)."""


@dataclass(frozen=True)
class Target:
    """Where the POSTs go: the connection's address and the request line's target."""

    scheme: str
    host: str
    port: int
    path: str
    authority: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in HTTP_PORTS or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        port = parts.port or HTTP_PORTS[parts.scheme]
        return cls(parts.scheme, parts.hostname, port, path, parts.netloc)

    def encode(self, post: Post) -> bytes:
        """The POST as it goes on the wire."""
        head = [f"POST {self.path} HTTP/1.1\r\nHost: {self.authority}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in post.headers.items()]
        head.append(f"Content-Length: {len(post.body)}\r\n\r\n")
        return "".join(head).encode("latin-1", "replace") + post.body


async def post_all(
    url: str, posts: Sequence[Post], *, connections: int, timeout_s: float
) -> list[Answer]:
    """Send `posts` over up to `connections` connections, in contiguous shares (so posts that
    must arrive in order, a record's request and response events, go one after the other on
    one connection), and return each one's answer, in order."""
    target = Target.from_url(url)
    share = max(1, math.ceil(len(posts) / max(connections, 1)))
    lanes = [posts[start : start + share] for start in range(0, len(posts), share)]
    answers = await asyncio.gather(*(_send_lane(target, lane, timeout_s) for lane in lanes))
    return [answer for lane_answers in answers for answer in lane_answers]


async def _send_lane(target: Target, posts: Sequence[Post], timeout_s: float) -> list[Answer]:
    """Pipeline `posts` on one connection, opening a new one as often as the receiver closes
    one after answering part of them; the rest get the reason when one answers none."""
    answers: list[Answer] = []
    loop = asyncio.get_running_loop()
    context = _tls_context() if target.scheme == "https" else None
    while len(answers) < len(posts):
        pending = posts[len(answers) :]
        try:
            transport, lane = await asyncio.wait_for(
                loop.create_connection(
                    lambda pending=pending: _Lane(len(pending)),
                    target.host,
                    target.port,
                    ssl=context,
                ),
                timeout_s,
            )
        except (OSError, TimeoutError) as error:
            reason = f"cannot reach {target.authority}: {error or type(error).__name__}"
            return answers + [reason] * len(pending)
        try:
            transport.writelines([target.encode(post) for post in pending])
            problem = await lane.finished(timeout_s)
        finally:
            transport.close()
        answers += lane.statuses
        if problem is not None and not lane.statuses:
            return answers + [f"{target.authority}: {problem}"] * len(pending)
    return answers


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One client context for every https connection: making one loads the CA bundle, which
    costs milliseconds, too much to pay per connection of every batch."""
    return ssl.create_default_context()


class _Lane(asyncio.Protocol):
    """One connection's answers, parsed as they arrive; done when all are in, or when the
    receiver closes it, fails it, or goes quiet."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.statuses: list[int] = []
        self._parser = httptools.HttpResponseParser(self)
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[str | None] = self._loop.create_future()
        self._transport: asyncio.Transport | None = None

    async def finished(self, timeout_s: float) -> str | None:
        """Wait until every answer is in or the connection ends (None, or what went wrong); a
        wait of `timeout_s` with no new answer ends it too."""
        while not self._done.done():
            answered = len(self.statuses)
            try:
                await asyncio.wait_for(asyncio.shield(self._done), timeout_s)
            except TimeoutError:
                if len(self.statuses) == answered:
                    self._end(f"no answer within {timeout_s:g}s")
        return self._done.result()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (a replica's loop) are not asyncio.Transport subclasses
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._end(f"an answer that is not HTTP: {error}")
        if self._transport is not None and not self._done.done():
            self._transport.pause_reading()
            self._loop.call_later(READ_INTERVAL_SECONDS, self._transport.resume_reading)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection closed: {exc}" if exc else "connection closed")

    def on_message_complete(self) -> None:  # httptools' callback, one per answer
        self.statuses.append(self._parser.get_status_code())
        if len(self.statuses) == self.expected:
            self._end(None)
        elif not self._parser.should_keep_alive():
            self._end("closed by the receiver")

    def _end(self, problem: str | None) -> None:
        if not self._done.done():
            self._done.set_result(problem)
