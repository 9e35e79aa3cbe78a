"""A real HTTP receiver of CloudEvents on loopback, as a prediction log's `url` sink sees one.

It runs on the test's own event loop (aiohttp's server), records every POST, and answers with
`status`, which a test changes to play a receiver that refuses or fails. `stop()` and `start()`
again reuse the port, so a client configured with `url` sees the receiver go down and come
back: connections refused in between.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Received:
    """One POST: its headers (names lower-cased), its body, and the status it was answered."""

    headers: dict[str, str]
    body: bytes
    status: int


class EventReceiver:
    """Records POSTs to http://127.0.0.1:<port>/events."""

    def __init__(self) -> None:
        self.port = 0
        self.status = 200
        self.posts: list[Received] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def start(self) -> None:
        """Listen: on a free port the first time, on the same one after a `stop()`."""
        app = web.Application()
        app.router.add_post("/events", self._receive)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening; later connections are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def accepted(self) -> list[Received]:
        """The POSTs answered with a 2xx: the events delivered."""
        return [post for post in self.posts if post.status < 300]

    async def wait_for(
        self, count: int, *, accepted: bool = True, timeout_s: float = WAIT_SECONDS
    ) -> list[Received]:
        """The first `count` events delivered (or POSTs at all), once they have arrived;
        TimeoutError if they do not."""

        def arrived() -> list[Received]:
            return self.accepted if accepted else self.posts

        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(arrived()) >= count), timeout_s
            )
        return arrived()[:count]

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        async with self._arrived:
            self.posts.append(Received(headers, body, self.status))
            self._arrived.notify_all()
        return web.Response(status=self.status)


class LoopThread:
    """An event loop on a thread of its own, for the receiver in tests that are not async."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any, timeout_s: float = 60) -> Any:
        """Run `coroutine` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
