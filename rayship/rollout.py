"""Rollout, rollback and canary decisions: pure functions of (spec, state, observation).

The operator persists a `RolloutState` in the ModelDeployment's status, observes storage and the
Serve applications, and calls `plan`; local mode (`rayship.follow`) keeps the state in memory
and calls the same `plan`, so `rayship serve` rolls versions out by the same rules. Nothing
here does I/O, so every rule below is unit-tested without a cluster:

- A new version starts beside the active one; traffic moves only once its app runs.
- If it fails to load, or is not running by the readiness deadline, it is removed, traffic
  stays on the active version, and the failure is remembered for this generation of the spec so
  it is not retried in a loop.
- The previous version stays warm for `keepPreviousSeconds`; switching back to a warm version is
  instant (its app already runs, so only the traffic table changes).
- A canary takes `percent` of unversioned traffic once its app runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rayship.conditions import Event, Problem, Reason
from rayship.errors import InvalidSpec
from rayship.serveconfig import LiveVersion
from rayship.spec import ModelDeploymentSpec
from rayship.status import UNHEALTHY, AppState
from rayship.storage import ModelNotFound, ResolvedVersion, StorageError

HISTORY_LIMIT = 10
FAILED_LIMIT = 10


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _warm_status(warm: Warm) -> dict[str, str]:
    """One live version in status form; no `retireAfter: null`, which the API server drops
    (kopf would then warn that its patch was not applied as sent)."""
    item = {"version": warm.version, "digest": warm.digest}
    if warm.retire_after is not None:
        item["retireAfter"] = _time(warm.retire_after) or ""
    return item


@dataclass(frozen=True)
class Warm:
    """A version with an application on the cluster; `retire_after` None means keep it."""

    version: str
    digest: str
    retire_after: datetime | None = None


@dataclass(frozen=True)
class Failure:
    """A version that failed for a spec generation, so it is not retried in a loop."""

    version: str
    digest: str
    generation: int
    message: str


@dataclass(frozen=True)
class RolloutState:
    """What the operator remembers between reconciles (kept in the object's status)."""

    active: Warm | None = None
    live: tuple[Warm, ...] = ()
    target: str | None = None
    target_started: datetime | None = None
    canary: str | None = None
    failures: tuple[Failure, ...] = ()
    history: tuple[dict[str, Any], ...] = ()

    def to_status(self) -> dict[str, Any]:
        """The status fields that persist this state."""
        return {
            "activeVersion": self.active.version if self.active else None,
            "activeDigest": self.active.digest if self.active else None,
            "liveVersions": [_warm_status(w) for w in self.live],
            "rolloutTarget": self.target,
            "rolloutStarted": _time(self.target_started),
            "canaryVersion": self.canary,
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "history": list(self.history),
        }

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> RolloutState:
        """The state a status describes (an empty status is the initial state)."""
        live = tuple(
            Warm(item["version"], item.get("digest", ""), _parse_time(item.get("retireAfter")))
            for item in status.get("liveVersions") or []
        )
        active_version = status.get("activeVersion")
        active = None
        if active_version:
            active = Warm(active_version, status.get("activeDigest") or "")
        return cls(
            active=active,
            live=live,
            target=status.get("rolloutTarget"),
            target_started=_parse_time(status.get("rolloutStarted")),
            canary=status.get("canaryVersion"),
            failures=tuple(Failure(**f) for f in status.get("failures") or []),
            history=tuple(status.get("history") or ()),
        )


@dataclass(frozen=True)
class Observed:
    """What the operator saw this time: resolved versions and the Serve applications."""

    now: datetime
    generation: int
    target: ResolvedVersion | None
    canary: ResolvedVersion | None = None
    problem: Problem | None = None  # when resolution failed
    apps: dict[str, AppState] = field(default_factory=dict)  # by version


@dataclass(frozen=True)
class Plan:
    """The decision: new state, what the cluster should run, what moves and what failed.

    `report.decide` turns it, with what the cluster was seen serving, into the status.
    """

    state: RolloutState
    live: tuple[LiveVersion, ...]
    traffic: tuple[tuple[str, int], ...]
    moving: Problem | None  # what is being brought up (reason and message), if anything
    problem: Problem | None
    events: tuple[Event, ...]


class _Planner:
    """One planning pass; mutable scratch state, so `plan` itself stays a pure function."""

    def __init__(self, spec: ModelDeploymentSpec, state: RolloutState, seen: Observed) -> None:
        self.spec = spec
        self.seen = seen
        self.state = state
        self.live = {warm.version: warm for warm in state.live}
        self.active = state.active
        self.target = state.target
        self.target_started = state.target_started
        self.failures = list(state.failures)
        self.history = list(state.history)
        self.events: list[Event] = []
        self.problem: Problem | None = seen.problem
        self.moving: Problem | None = None
        self.canary: str | None = None
        self.canary_percent = 0

    # --- helpers ---------------------------------------------------------------------------

    def _failed_before(self, resolved: ResolvedVersion) -> Failure | None:
        for failure in self.failures:
            if (failure.version, failure.digest, failure.generation) == (
                resolved.version,
                resolved.digest,
                self.seen.generation,
            ):
                return failure
        return None

    def _record(self, version: str, digest: str, outcome: Reason, message: str) -> None:
        entry = {
            "version": version,
            "digest": digest,
            "requested": self.spec.model.version,
            "outcome": outcome.value,
            "message": message,
            "time": _time(self.seen.now),
        }
        self.history = [entry, *self.history][:HISTORY_LIMIT]

    def _fail(self, resolved: ResolvedVersion, message: str) -> None:
        failure = Failure(resolved.version, resolved.digest, self.seen.generation, message)
        self.failures = [failure, *self.failures][:FAILED_LIMIT]
        if resolved.version not in self._keep():
            self.live.pop(resolved.version, None)

    def _keep(self) -> set[str]:
        return {v for v in (self.active.version if self.active else None, self.canary) if v}

    def _app(self, version: str) -> AppState | None:
        return self.seen.apps.get(version)

    def _deadline_passed(self) -> bool:
        if self.target_started is None:
            return False
        deadline = timedelta(seconds=self.spec.rollout.readiness_deadline_seconds)
        return self.seen.now - self.target_started > deadline

    # --- steps -----------------------------------------------------------------------------

    def roll_out(self, resolved: ResolvedVersion) -> None:
        """Bring `resolved` up beside the active version; switch when it runs."""
        if self.active is not None and resolved.version == self.active.version:
            self.target = self.target_started = None
            return
        failed = self._failed_before(resolved)
        if failed is not None:
            self.problem = self._failure_problem(failed.message)
            self.target = self.target_started = None
            return
        if self.target != resolved.version:
            self.target, self.target_started = resolved.version, self.seen.now
            message = f"rolling out version {resolved.version}"
            self.events.append(Event(False, Reason.ROLLING_OUT, message))
        self.live.setdefault(resolved.version, Warm(resolved.version, resolved.digest))
        app = self._app(resolved.version)
        if app is not None and app.running:
            self._switch_to(resolved)
        elif (app is not None and app.failed) or self._deadline_passed():
            self._give_up(resolved, app)
        else:
            self.moving = _bringing_up(Reason.ROLLING_OUT, f"version {resolved.version}", app)

    def _failure_problem(self, message: str) -> Problem:
        """A failed version: rolled back while another serves, else a load failure."""
        if self.active is None:
            return Problem(Reason.LOAD_FAILED, message)
        return Problem(
            Reason.ROLLED_BACK, f"{message}; still serving version {self.active.version}"
        )

    def _switch_to(self, resolved: ResolvedVersion) -> None:
        previous = self.active
        if previous is not None:
            keep = timedelta(seconds=self.spec.rollout.keep_previous_seconds)
            self.live[previous.version] = replace(previous, retire_after=self.seen.now + keep)
        self.active = Warm(resolved.version, resolved.digest)
        self.live[resolved.version] = self.active
        self.target = self.target_started = None
        what = f"version {resolved.version} serves"
        if previous is not None:
            what += f" (was {previous.version}, kept warm for rollback)"
        self._record(resolved.version, resolved.digest, Reason.ROLLED_OUT, what)
        self.events.append(Event(False, Reason.ROLLED_OUT, what))

    def _give_up(self, resolved: ResolvedVersion, app: AppState | None) -> None:
        why = _why_not_running(f"version {resolved.version}", app, self.spec)
        self.target = self.target_started = None
        self._fail(resolved, why)
        self.problem = self._failure_problem(why)
        self._record(resolved.version, resolved.digest, self.problem.reason, self.problem.message)

    def check_active(self) -> None:
        """A serving version that Serve reports failed: replicas that ran and then failed
        (Serve replaces them), or a new configuration it could not deploy (a changed runtime
        environment, resources, runtime options). Its other replicas keep answering, and
        Degraded says which it is."""
        app = self._app(self.active.version) if self.active else None
        if self.active is None or app is None or not app.failed or self.problem is not None:
            return
        summary = app.summary or "Serve gave no reason"
        if app.status == UNHEALTHY:
            self.problem = Problem(
                Reason.REPLICAS_UNHEALTHY,
                f"version {self.active.version} has failing replicas, which Serve replaces: "
                f"{summary}; its replicas that still run keep serving",
            )
            return
        self.problem = Problem(
            Reason.LOAD_FAILED,
            f"version {self.active.version} failed to apply the spec change: {summary}; "
            "its replicas that still run keep serving",
        )

    def run_canary(self, resolved: ResolvedVersion, percent: int) -> None:
        """Give the canary its share once it runs; never while nothing else is active."""
        if self.active is None or resolved.version == self.active.version:
            return
        failed = self._failed_before(resolved)
        if failed is not None:
            self.problem = Problem(Reason.CANARY_FAILED, failed.message)
            return
        self.live.setdefault(resolved.version, Warm(resolved.version, resolved.digest))
        self.live[resolved.version] = replace(self.live[resolved.version], retire_after=None)
        app = self._app(resolved.version)
        if app is not None and app.running:
            if self.state.canary != resolved.version:
                message = f"canary {resolved.version} takes {percent}%"
                self.events.append(Event(False, Reason.CANARY_STARTED, message))
            self.canary, self.canary_percent = resolved.version, percent
        elif app is not None and app.failed:
            message = _why_not_running(f"canary {resolved.version}", app, self.spec)
            self._fail(resolved, message)
            self.problem = Problem(Reason.CANARY_FAILED, message)
        elif self.moving is None:
            self.moving = _bringing_up(Reason.STARTING_CANARY, f"canary {resolved.version}", app)

    def retire(self) -> None:
        """Drop versions nobody needs once their keep-warm window has passed."""
        needed = self._keep() | ({self.target} if self.target else set())
        for version, warm in list(self.live.items()):
            if version in needed:
                continue
            if warm.retire_after is None:
                keep = timedelta(seconds=self.spec.rollout.keep_previous_seconds)
                self.live[version] = replace(warm, retire_after=self.seen.now + keep)
            elif self.seen.now >= warm.retire_after:
                del self.live[version]

    # --- result ----------------------------------------------------------------------------

    def traffic(self) -> tuple[tuple[str, int], ...]:
        if self.active is None:
            return ()
        if self.canary is None:
            return ((self.active.version, 100),)
        return (
            (self.active.version, 100 - self.canary_percent),
            (self.canary, self.canary_percent),
        )

    def result(self) -> Plan:
        state = RolloutState(
            active=self.active,
            live=tuple(sorted(self.live.values(), key=lambda w: w.version)),
            target=self.target,
            target_started=self.target_started,
            canary=self.canary,
            failures=tuple(self.failures),
            history=tuple(self.history),
        )
        return Plan(
            state=state,
            live=tuple(LiveVersion(w.version, w.digest) for w in state.live),
            traffic=self.traffic(),
            moving=self.moving,
            problem=self.problem,
            events=tuple(self.events),
        )


def _bringing_up(reason: Reason, what: str, app: AppState | None) -> Problem:
    """What a version coming up waits for: Ray's resources when its replicas cannot be
    scheduled (Serve says so in the application's message), else its replicas."""
    waiting = app.unschedulable if app is not None else None
    if waiting:
        return Problem(Reason.WAITING_FOR_RESOURCES, f"{what} waits for resources: {waiting}")
    return Problem(reason, f"starting {what}")


def _why_not_running(what: str, app: AppState | None, spec: ModelDeploymentSpec) -> str:
    """One line on why a version never ran: its own error, its resources, or the deadline."""
    if app is not None and app.failed:
        return f"{what} failed to load: {app.summary or 'Serve gave no reason'}"
    deadline = spec.rollout.readiness_deadline_seconds
    why = f"{what} was not ready within {deadline}s"
    waiting = app.unschedulable if app is not None else None
    return f"{why}: it waits for resources: {waiting}" if waiting else why


def plan(spec: ModelDeploymentSpec, state: RolloutState, observed: Observed) -> Plan:
    """Decide the next state of one ModelDeployment from what was observed.

    Warning Events for Degraded transitions are not decided here: the reconciler posts one
    whenever the Degraded condition changes, whatever caused it.
    """
    planner = _Planner(spec, state, observed)
    problem = observed.problem
    missing = problem is not None and problem.reason == Reason.MODEL_NOT_FOUND
    if problem is not None and missing and state.active is not None:
        message = f"{problem.message}; still serving version {state.active.version}"
        planner.problem = Problem(Reason.ROLLED_BACK, message)
    if observed.target is not None:
        planner.roll_out(observed.target)
    planner.check_active()
    canary = spec.rollout.canary
    if canary is not None and observed.canary is not None:
        planner.run_canary(observed.canary, canary.percent)
    planner.retire()
    return planner.result()


def resolution_problem(error: StorageError | InvalidSpec) -> Problem:
    """What a version that could not be resolved reports, in the operator and local mode alike:
    a missing folder, an invalid URI or version name, or a store that failed."""
    if isinstance(error, ModelNotFound):
        return Problem(Reason.MODEL_NOT_FOUND, str(error))
    if isinstance(error, InvalidSpec):
        return Problem(Reason.INVALID_SPEC, str(error))
    return Problem(Reason.STORAGE_ERROR, str(error))
