"""HAProxy's per-backend request counts (`stot`), read through its admin socket, so a test of
the V2 gRPC service (`tests/ray/test_grpc.py`) can tell which application answered a call."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rayship.haproxy import haproxy_command, haproxy_stats

T = TypeVar("T")


class HAProxyCounts:
    """The session's HAProxy, through its admin socket: requests served per backend."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    @classmethod
    def serving(cls, grpc_address: str) -> HAProxyCounts:
        """The HAProxy whose gRPC frontend listens on `grpc_address` (host:port).

        Local mode keeps HAProxy's files in a folder of its own under the temporary folder
        (`rayship.local.serve_environment`); the config naming this address is the one.
        """
        bind = re.compile(rf"^\s*bind {re.escape(grpc_address)} proto h2\b", re.MULTILINE)
        configs = [
            config
            for config in Path(tempfile.gettempdir()).glob("rayship-haproxy-*/**/haproxy.cfg")
            if bind.search(config.read_text(errors="replace"))
        ]
        if not configs:
            raise AssertionError(f"no HAProxy config binds {grpc_address}")
        newest = max(configs, key=lambda config: config.stat().st_mtime)
        return cls(newest.with_name("admin.sock"))

    def served(self) -> dict[str, int]:
        """Requests served so far by each backend (its `BACKEND` row's `stot`)."""
        return {
            row["pxname"]: int(row.get("stot") or 0)
            for row in haproxy_stats(self.socket_path)
            if row.get("svname") == "BACKEND"
        }

    def process(self) -> str:
        """The running HAProxy's process id: a reload starts a new one, with counts from zero."""
        for line in haproxy_command(self.socket_path, "show info").splitlines():
            if line.startswith("Pid: "):
                return line.removeprefix("Pid: ").strip()
        return ""

    def count(self, action: Callable[[], T], attempts: int = 5) -> tuple[T, dict[str, int]]:
        """What `action` returns, and the requests each backend served while it ran.

        HAProxy restarts its counts when Serve reloads it, which it may do a moment after a
        deploy: `action` is run again (so it must be repeatable) when a reload came between.
        """
        for _ in range(attempts):
            before_process, before = self.process(), self.served()
            result = action()
            after_process, after = self.process(), self.served()
            if before_process and before_process == after_process:
                return result, {name: after[name] - before.get(name, 0) for name in after}
            time.sleep(1)
        raise AssertionError(f"HAProxy reloaded during each of {attempts} attempts")
