"""A CloudEvents receiver for bench/observability_bench.py, in a process of its own so that it
shares no interpreter with the bench: it answers every POST 200 and counts it by `ce-type`;
`GET /count` returns the counts as JSON.

    .venv/bin/python bench/event_sink.py PORT
"""

from __future__ import annotations

import sys
from collections import Counter

from aiohttp import web

received: Counter[str] = Counter()


async def accept(request: web.Request) -> web.Response:
    await request.read()
    received[request.headers.get("ce-type", "none")] += 1
    return web.Response()


async def count(request: web.Request) -> web.Response:
    return web.json_response(dict(received))


def main() -> None:
    app = web.Application()
    app.router.add_post("/events", accept)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
