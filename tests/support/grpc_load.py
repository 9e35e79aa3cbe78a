"""Steady V2 gRPC load on a model, and HAProxy's per-backend request counts, for the tests of
the V2 gRPC service (`tests/ray/test_grpc.py`).

- `GrpcLoad`: tritonclient.grpc clients on threads calling a model's unversioned ModelInfer at
  a fixed rate and recording which version answered each call (or how it failed), the way
  `support.traffic.SteadyLoad` does over REST.
- `HAProxyCounts`: the requests each backend of the session's HAProxy has served (`stot`),
  read through its admin socket, so a test can tell which application answered a call.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import tritonclient.grpc as triton_grpc

from rayship.haproxy import haproxy_command, haproxy_stats

T = TypeVar("T")

# How long one call may take before it counts as failed: far above a healthy answer (ms).
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """One call's outcome: when it completed (time.monotonic) and which version answered."""

    at: float
    version: str | None  # None: the call failed
    error: str = ""


class GrpcLoad:
    """`clients` threads calling `model`'s unversioned ModelInfer, `rate_per_s` calls in all.

    A context manager: the threads run inside the block and are joined when it ends. Each
    thread has its own client; `make_inputs` builds the inputs of every call.
    """

    def __init__(
        self,
        address: str,
        model: str,
        make_inputs: Callable[[], list[triton_grpc.InferInput]],
        rate_per_s: float = 40.0,
        clients: int = 2,
    ) -> None:
        self.address = address
        self.model = model
        self._make_inputs = make_inputs
        self._period_s = clients / rate_per_s
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"grpc-load-{model}-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * REQUEST_TIMEOUT_S)

    def _run(self) -> None:
        client = triton_grpc.InferenceServerClient(self.address)
        inputs = self._make_inputs()
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    result = client.infer(self.model, inputs, client_timeout=REQUEST_TIMEOUT_S)
                    answer = Answer(time.monotonic(), result.get_response().model_version)
                except Exception as error:  # every failure is an outcome to count
                    answer = Answer(time.monotonic(), None, f"{type(error).__name__}: {error}")
                with self._lock:
                    self._answers.append(answer)
                # A slow answer delays the next call but never makes the client burst after it.
                due = max(due + self._period_s, time.monotonic())
                self._stop.wait(max(0.0, due - time.monotonic()))
        finally:
            client.close()

    @property
    def answers(self) -> list[Answer]:
        """Every answer so far, in the order they completed."""
        with self._lock:
            return list(self._answers)

    def failures(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.version is None]

    def wait_for(self, versions: set[str], in_a_row: int, timeout_s: float) -> None:
        """Block until the latest `in_a_row` answers all came from `versions`, each of them
        among them.

        Raises AssertionError with the last answers at the deadline.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last = self.answers[-in_a_row:]
            if len(last) == in_a_row and {answer.version for answer in last} == versions:
                return
            time.sleep(0.05)
        recent = [a.version or f"failed ({a.error})" for a in self.answers[-in_a_row:]]
        raise AssertionError(
            f"{self.model}: no {in_a_row} answers in a row from versions {sorted(versions)} "
            f"within {timeout_s:.0f}s; the last answers: {recent}"
        )


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
