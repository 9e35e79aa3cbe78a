"""`post_all` against real servers on loopback: aiohttp's (`support.event_receiver`), and small
asyncio servers written here that play receivers aiohttp will not: one closing the connection
after every answer, one closing it without a word, one that never answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from rayship_predictors.pipelined_http import Post, Target, post_all
from support.event_receiver import EventReceiver

OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a scenario on asyncio's event loop and on uvloop's, which Serve's replicas run:
    its transports are not asyncio's classes."""

    def on_loop(scenario: Coroutine[Any, Any, None]) -> None:
        bounded = asyncio.wait_for(scenario, 30)
        if request.param == "uvloop":
            uvloop.run(bounded)
        else:
            asyncio.run(bounded)

    return on_loop


Runner = Callable[[Coroutine[Any, Any, None]], None]


def posts(count: int) -> list[Post]:
    return [Post({"ce-id": f"e{index}"}, f"body {index}".encode()) for index in range(count)]


async def read_post(reader: asyncio.StreamReader) -> bytes | None:
    """One POST's body off a raw connection, or None at its end."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


class RawServer:
    """An asyncio server on a free loopback port, counting its connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.bodies: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/events"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


def test_every_post_arrives_in_order_on_its_connection_with_its_status(run: Runner) -> None:
    async def scenario() -> None:
        async with EventReceiver() as receiver:
            answers = await post_all(receiver.url, posts(50), connections=4, timeout_s=5)
            receiver.status = 503
            refused = await post_all(receiver.url, posts(3), connections=4, timeout_s=5)
        assert answers == [200] * 50
        assert refused == [503] * 3
        delivered = [post.body for post in receiver.posts[:50]]
        assert sorted(delivered) == sorted(f"body {index}".encode() for index in range(50))
        # contiguous shares of 13: each connection's posts arrive in the order they were given
        for start in range(0, 50, 13):
            share = [f"body {index}".encode() for index in range(start, min(start + 13, 50))]
            assert [body for body in delivered if body in share] == share

    run(scenario())


@pytest.mark.parametrize(
    ("per_connection", "last_answer", "connections"),
    [(1, OK_CLOSE, 5), (2, None, 3)],
    ids=["Connection: close after each answer", "dropped without a word after two"],
)
def test_posts_a_receiver_left_unanswered_go_again_on_new_connections(
    run: Runner, per_connection: int, last_answer: bytes | None, connections: int
) -> None:
    async def answer_some(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for number in range(1, per_connection + 1):
            body = await read_post(reader)
            assert body is not None
            server.bodies.append(body)
            writer.write(last_answer if number == per_connection and last_answer else OK)
        await writer.drain()
        if last_answer is None:
            await asyncio.sleep(0.1)  # the answers are read before the reset drops them
            writer.transport.abort()

    async def scenario() -> None:
        async with server:
            answers = await post_all(server.url, posts(5), connections=1, timeout_s=5)
        assert answers == [200] * 5
        assert server.bodies == [f"body {index}".encode() for index in range(5)]
        assert server.connections == connections

    server = RawServer(answer_some)
    run(scenario())


def test_a_receiver_that_never_answers_times_out_with_the_reason(run: Runner) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async def scenario() -> None:
        async with server:
            answers = await post_all(server.url, posts(3), connections=2, timeout_s=0.3)
        assert len(answers) == 3
        assert all(isinstance(a, str) and "no answer within 0.3s" in a for a in answers), answers

    server = RawServer(swallow)
    run(scenario())


def test_an_answer_that_is_not_http_fails_the_posts_with_the_reason(run: Runner) -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_post(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        async with server:
            answers = await post_all(server.url, posts(2), connections=1, timeout_s=5)
        assert all(isinstance(a, str) and "not HTTP" in a for a in answers), answers

    server = RawServer(babble)
    run(scenario())


def test_a_receiver_that_is_down_cannot_be_reached(run: Runner) -> None:
    async def scenario() -> None:
        receiver = EventReceiver()
        await receiver.start()
        await receiver.stop()  # its port is known and refuses connections
        answers = await post_all(receiver.url, posts(2), connections=4, timeout_s=5)
        assert all(isinstance(a, str) and "cannot reach 127.0.0.1:" in a for a in answers)

    run(scenario())


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("http://collector:8080/v1/e?tenant=a", "POST /v1/e?tenant=a HTTP/1.1", "collector:8080"),
        ("https://collector.example", "POST / HTTP/1.1", "collector.example"),
    ],
)  # fmt: skip
def test_the_request_names_the_path_query_and_host(url: str, request_line: str, host: str) -> None:
    wire = Target.from_url(url).encode(Post({"ce-id": "x"}, b"{}"))
    head, body = wire.split(b"\r\n\r\n")
    assert head.decode().split("\r\n") == [
        request_line,
        f"Host: {host}",
        "ce-id: x",
        "Content-Length: 2",
    ]
    assert body == b"{}"
    assert Target.from_url(url).port == (8080 if "8080" in url else 443)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http:// or https:// URL"):
        Target.from_url("ftp://collector/events")
