"""Watch a model while its traffic moves: steady client load, and its ModelDeployment's status.

The operator promises that moving traffic between warm versions (a rollback, a roll forward, a
canary turned on or off) fails no request, keeps `Ready` True and is instant (README, "The
operator"). `tests/e2e/test_rollback_promise.py` asserts that and `bench/operator_bench.py`
times it, both through these probes:

- `SteadyLoad`: V2 clients on threads calling the model's unversioned URL at a fixed rate and
  recording every answer's `model_version` (or its failure). Traffic has moved when the answers
  show it (`moved_at`), which is what a user sees, rather than when some status says so. Over
  REST by default, or over the V2 gRPC service (`grpc_client`, tests/ray/test_grpc.py).
- `StatusWatcher`: samples the ModelDeployment from a thread and records its `Ready` condition,
  so a brief dip to False between two polls of a test's own is still seen.

Both pace themselves (a fixed request rate, a fixed sampling period): the machines are shared,
and an unpaced loop would take the CPU the operator and Ray need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton

from rayship.contract import CRD_VERSION, GROUP, PLURAL

# One iris sample: every version of the example iris model takes it.
ROW = np.array([[6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
# Answers in a row that show traffic has moved. A canary at 50% gives 20 answers of one version
# in a row by chance once in a million, so this also tells "canary off" from a lucky streak.
IN_A_ROW = 20
# How long one request may take before it counts as failed: far above a healthy answer (ms).
REQUEST_TIMEOUT_S = 10.0


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type `kind`, or {} when there is none."""
    for item in status.get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


def settled(generation: int, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A status check: the operator has handled `generation` and reports phase Ready with
    these status fields (`canaryVersion=None`: no canary)."""

    def check(status: dict[str, Any]) -> bool:
        return (
            status.get("observedGeneration") == generation
            and status.get("phase") == "Ready"
            and all(status.get(key) == value for key, value in fields.items())
        )

    return check


def grpc_client(address: str) -> Callable[[str], str]:
    """`v2_client` over the V2 gRPC service at `address` (host:port): model name -> answering
    version, through tritonclient's gRPC client. One per thread, as `v2_client`."""
    client = triton_grpc.InferenceServerClient(address)
    given = triton_grpc.InferInput("input", list(ROW.shape), "FP32")
    given.set_data_from_numpy(ROW)

    def infer(model: str) -> str:
        result = client.infer(model, [given], client_timeout=REQUEST_TIMEOUT_S)
        return str(result.get_response().model_version)

    return infer


def v2_client(address: str) -> Callable[[str], str]:
    """A V2 client of the server at `address` (host:port): model name -> answering version.

    One per thread: tritonclient's HTTP client is not shared between threads.
    """
    client = triton.InferenceServerClient(
        url=address, connection_timeout=REQUEST_TIMEOUT_S, network_timeout=REQUEST_TIMEOUT_S
    )
    given = triton.InferInput("input", list(ROW.shape), "FP32")
    given.set_data_from_numpy(ROW)

    def infer(model: str) -> str:
        return str(client.infer(model, [given]).get_response()["model_version"])

    return infer


@dataclass(frozen=True)
class Answer:
    """One request's outcome: when it completed (time.monotonic) and which version answered."""

    at: float
    version: str | None  # None: the request failed
    error: str = ""


def moved_at(
    answers: Sequence[Answer], since: float, expected: frozenset[str], in_a_row: int = IN_A_ROW
) -> float | None:
    """When traffic settled on exactly the `expected` versions after `since`, if it has.

    Settled means: the latest `in_a_row` or more answers all came from `expected`, and together
    they include every expected version. The moment is when the last expected version first
    answered in that run: for one version, the start of the run; when a canary is turned on
    beside the version already serving, the canary's first answer.
    """
    start = None  # where the current run of expected answers began
    for index, answer in enumerate(answers):
        if answer.at < since:
            continue
        if answer.version not in expected:
            start = None
        elif start is None:
            start = index
    run = answers[start:] if start is not None else []
    if len(run) < in_a_row or {a.version for a in run} != expected:
        return None
    return max(next(a.at for a in run if a.version == version) for version in expected)


class TrafficNotMovedError(AssertionError):
    """Traffic did not settle on the expected versions in time; the message shows the answers."""


class SteadyLoad:
    """`clients` threads calling a model's unversioned URL, `rate_per_s` requests in all.

    Use as a context manager: the threads run inside the block and are joined when it ends.
    Every answer is kept (a few thousand over a test), so steps can be judged after the fact.
    `client` makes each thread's client: REST (`v2_client`) or the gRPC service (`grpc_client`).
    """

    def __init__(
        self,
        address: str,
        model: str,
        rate_per_s: float = 50.0,
        clients: int = 2,
        client: Callable[[str], Callable[[str], str]] = v2_client,
    ) -> None:
        self.address = address
        self.model = model
        self._client = client
        self._period_s = clients / rate_per_s
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{model}-{i}", daemon=True)
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
        infer = self._client(self.address)
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                version = infer(self.model)
                answer = Answer(time.monotonic(), version)
            except Exception as error:  # every failure is an outcome to count, never a crash
                answer = Answer(time.monotonic(), None, f"{type(error).__name__}: {error}")
            with self._lock:
                self._answers.append(answer)
            # A slow answer delays the next request but never makes the client burst after it.
            due = max(due + self._period_s, time.monotonic())
            self._stop.wait(max(0.0, due - time.monotonic()))

    @property
    def answers(self) -> list[Answer]:
        """Every answer so far, in the order they completed."""
        with self._lock:
            return list(self._answers)

    def failures(self, since: float = 0.0) -> list[Answer]:
        """The failed requests that completed after `since`."""
        return [a for a in self.answers if a.version is None and a.at >= since]

    def wait_moved(
        self, since: float, expected: set[str], timeout_s: float, in_a_row: int = IN_A_ROW
    ) -> float:
        """Block until traffic settled on `expected` after `since`; return when it moved.

        Raises TrafficNotMovedError with the last answers at the deadline.
        """
        wanted = frozenset(expected)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            moment = moved_at(self.answers, since, wanted, in_a_row)
            if moment is not None:
                return moment
            time.sleep(0.05)
        recent = [a.version or f"failed ({a.error})" for a in self.answers[-in_a_row:]]
        raise TrafficNotMovedError(
            f"{self.model}: traffic never settled on versions {sorted(wanted)} within "
            f"{timeout_s:.0f}s; the last answers: {recent}"
        )


def first_answer(address: str, model: str, timeout_s: float, period_s: float = 0.05) -> float:
    """Poll the model's unversioned URL until it answers; return when it first did."""
    infer = v2_client(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            infer(model)
            return time.monotonic()
        except Exception:  # not served yet: keep asking until the deadline
            if time.monotonic() > deadline:
                raise
            time.sleep(period_s)


@dataclass(frozen=True)
class Sample:
    """What one read of the ModelDeployment showed."""

    at: float
    ready: str | None  # the Ready condition's status ("True"/"False"), None before there is one
    phase: str | None
    reason: str = ""
    message: str = ""


class StatusWatcher:
    """Reads one ModelDeployment every `period_s` from a thread and records its Ready condition.

    It reads through the kubernetes client rather than kubectl, so sampling five times a second
    does not start five processes a second on a shared two-core machine. A context manager:
    sampling runs inside the block.
    """

    def __init__(self, kubeconfig: Path, namespace: str, name: str, period_s: float = 0.2) -> None:
        import kubernetes

        self.namespace = namespace
        self.name = name
        self._period_s = period_s
        self._client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self._api = kubernetes.client.CustomObjectsApi(self._client)
        self._samples: list[Sample] = []
        self.missed = 0  # reads the API server did not answer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"status-{name}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._client.close()

    def _read(self) -> Sample | None:
        """One sample; None when the API server did not answer this time (a busy machine)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            body = self._api.get_namespaced_custom_object(
                GROUP, CRD_VERSION, self.namespace, PLURAL, self.name, _request_timeout=5
            )
        except ApiException as error:
            if error.status != 404:
                self.missed += 1
                return None
            body = {}  # not applied yet: a sample like any other
        except HTTPError:
            self.missed += 1
            return None
        status = body.get("status") or {}
        ready = condition(status, "Ready")
        return Sample(
            time.monotonic(),
            ready.get("status"),
            status.get("phase"),
            ready.get("reason", ""),
            ready.get("message", ""),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            sample = self._read()
            if sample is not None:
                with self._lock:
                    self._samples.append(sample)
            self._stop.wait(max(0.0, self._period_s - (time.monotonic() - started)))

    @property
    def samples(self) -> list[Sample]:
        """Every sample so far, oldest first."""
        with self._lock:
            return list(self._samples)

    def ready_at(self, since: float = 0.0) -> float | None:
        """When a sample taken after `since` first showed Ready True, if one has."""
        return next((s.at for s in self.samples if s.at >= since and s.ready == "True"), None)

    def wait_ready(self, since: float, timeout_s: float) -> float:
        """Block until a sample after `since` shows Ready True; return when it was taken."""
        deadline = time.monotonic() + timeout_s
        while (moment := self.ready_at(since)) is None:
            if time.monotonic() > deadline:
                last = self.samples[-1] if self.samples else "no sample"
                raise AssertionError(
                    f"{self.namespace}/{self.name} not Ready within {timeout_s:.0f}s: {last}"
                )
            time.sleep(self._period_s / 2)
        return moment

    def not_ready_after_ready(self) -> list[Sample]:
        """The samples after the first Ready True that were not Ready True."""
        first = self.ready_at()
        if first is None:
            return []
        return [s for s in self.samples if s.at > first and s.ready != "True"]
