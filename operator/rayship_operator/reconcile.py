"""Reconcile one ModelDeployment: resolve, observe, plan, write the cluster, report.

The I/O around `rollout.plan`. kopf handlers call `Reconciler.reconcile` on every change and on
a timer; it never raises for expected failures (storage, credentials, unreachable cluster,
name conflicts): those become status conditions and Events, and whatever serves keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rayship.conditions import Event, Phase, Problem, Reason
from rayship.contract import model_route, version_app_name
from rayship.dashboard import DashboardError
from rayship.errors import CredentialsError, InvalidSpec
from rayship.manifest import ModelDeployment
from rayship.rollout import Observed, Plan, RolloutState, plan, resolution_problem
from rayship.serveconfig import ModelRouting
from rayship.spec import StorageSpec
from rayship.status import AppState
from rayship.storage import (
    Credentials,
    ModelStore,
    ResolvedVersion,
    StorageError,
    StorageUnavailable,
)
from rayship_operator import report
from rayship_operator.clusters import ClusterRef, Clusters, cluster_for
from rayship_operator.credentials import read_auth_tokens, read_credentials, read_env_from
from rayship_operator.metrics import OperatorMetrics
from rayship_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """What the index knows of a ModelDeployment: who claims which model name, since when."""

    key: str
    model_name: str
    created: str


@dataclass(frozen=True)
class Outcome:
    """What a reconcile wants written back: the status and the Events to post."""

    status: dict[str, Any]
    events: tuple[Event, ...] = ()


def object_key(namespace: str, name: str) -> str:
    """`namespace/name`, the key of a ModelDeployment everywhere in the operator."""
    return f"{namespace}/{name}"


def now_text() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def conflict_winner(claims: Iterable[Claim], mine: Claim) -> Claim | None:
    """The older ModelDeployment holding `mine`'s model name, if any (the older keeps it)."""
    rivals = [c for c in claims if c.model_name == mine.model_name and c.key != mine.key]
    older = [c for c in rivals if (c.created, c.key) < (mine.created, mine.key)]
    return min(older, key=lambda c: (c.created, c.key)) if older else None


StatusWriter = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""Writes `status` to the ModelDeployment `namespace/name`."""


Stopping = Callable[[], Awaitable[bool]]
"""Whether a reconcile should stop settling now (its object is being deleted)."""


async def never() -> bool:
    """For a reconcile that nothing asks to stop."""
    return False


@dataclass
class _Resolution:
    generation: int
    at: float
    resolved: ResolvedVersion


@dataclass
class Reconciler:
    """Operator-wide state: cluster writers, latest rollout states, version resolutions."""

    settings: OperatorSettings
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    clusters: Clusters = field(init=False)
    states: dict[str, RolloutState] = field(default_factory=dict)
    # The last status written per object, with the object's uid: kopf hands a handler the body
    # it had when the handler started, which may predate this process's last write.
    statuses: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    resolutions: dict[tuple[str, str], _Resolution] = field(default_factory=dict)
    # One reconcile at a time per object: kopf runs the timer beside the change handlers.
    object_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Writes a status while a reconcile goes on settling (`reconcile`); the handlers pass one
    # that patches the status subresource. None: only the final status is written.
    publish: StatusWriter | None = None

    def __post_init__(self) -> None:
        self.clusters = Clusters(self.settings.build_grace_seconds, self.metrics)

    def cluster_of(self, md: ModelDeployment) -> ClusterRef:
        """The cluster `md` targets."""
        return cluster_for(md.namespace, md.spec.ray_cluster, self.settings)

    def _effective_storage(self, storage: StorageSpec) -> StorageSpec:
        """spec.storage with the operator's S3 defaults where the spec names none."""
        return dataclasses.replace(
            storage,
            endpoint_url=storage.endpoint_url or self.settings.s3_endpoint,
            region=storage.region or self.settings.s3_region,
        )

    async def _resolve(
        self,
        md: ModelDeployment,
        version: str,
        generation: int,
        store: ModelStore,
    ) -> ResolvedVersion:
        """Resolve a version, reusing the last answer unless the spec changed or `latest`'s
        poll interval has passed."""
        key = (object_key(md.namespace, md.name), version)
        cached = self.resolutions.get(key)
        poll = md.spec.model.poll_interval_seconds
        if cached is not None and cached.generation == generation:
            fresh = version != "latest" or poll == 0 or time.monotonic() - cached.at < poll
            if fresh:
                return cached.resolved
        uri = md.spec.model.storage_uri
        try:
            resolved = await asyncio.to_thread(store.resolve, uri, version)
        except StorageUnavailable as error:
            if cached is None:
                raise
            # S3 is away, not the version: keep what it resolved to last (the replicas' cache
            # serves those files), so a spec change such as more replicas still goes through.
            logger.warning(
                "%s; keeping version %s of %s as last resolved", error, cached.resolved.version, uri
            )
            return cached.resolved
        self.resolutions[key] = _Resolution(generation, time.monotonic(), resolved)
        return resolved

    async def _observe_versions(
        self, md: ModelDeployment, generation: int, store: ModelStore
    ) -> tuple[ResolvedVersion | None, ResolvedVersion | None, Problem | None]:
        """Resolved target and canary, or the problem that stopped resolution."""
        try:
            target = await self._resolve(md, md.spec.model.version, generation, store)
            canary_spec = md.spec.rollout.canary
            canary = None
            if canary_spec is not None:
                canary = await self._resolve(md, canary_spec.version, generation, store)
        except (StorageError, InvalidSpec) as error:
            return None, None, resolution_problem(error)
        return target, canary, None

    async def reconcile(
        self,
        md: ModelDeployment,
        body: dict[str, Any],
        claims: Iterable[Claim],
        generation: int,
        stopping: Stopping = never,
    ) -> Outcome:
        """Reconcile `md` (`body` parsed) until nothing moves, `settle_seconds` have passed or
        `stopping` says so (the object is being deleted).

        A rollout takes a few passes (start the version, move traffic once it runs, see the
        routes applied); running them here, a fraction of a second apart, makes a warm
        rollback take effect and show Ready within about a second instead of a timer period
        per step. The status of the last pass is written, with the Events of every pass.
        """
        key = object_key(md.namespace, md.name)
        started, ok = time.monotonic(), False
        try:
            async with self.object_locks.setdefault(key, asyncio.Lock()):
                outcome = await self._settle(
                    key, md, body, list(claims), generation, stopping=stopping
                )
            ok = True
            return outcome
        finally:
            self.metrics.reconciled(time.monotonic() - started, ok)

    async def _settle(
        self,
        key: str,
        md: ModelDeployment,
        body: dict[str, Any],
        claims: list[Claim],
        generation: int,
        *,
        stopping: Stopping,
    ) -> Outcome:
        uid = str(body["metadata"].get("uid", ""))
        remembered = self.statuses.get(key)
        previous = remembered[1] if remembered and remembered[0] == uid else body.get("status")
        deadline = time.monotonic() + self.settings.settle_seconds
        events: list[Event] = []
        while True:
            outcome = await self._pass(md, body, claims, generation, dict(previous or {}))
            events += outcome.events
            for event in outcome.events:  # the log names the object; the Event is attached to it
                if event.warning:
                    logger.warning("%s: %s: %s", key, event.reason.value, event.message)
            self.metrics.events(md.namespace, md.name, outcome.events)
            self.metrics.status(key, generation, str(outcome.status.get("phase")))
            changed = outcome.status != previous
            previous = outcome.status
            self.statuses[key] = (uid, outcome.status)
            settled = outcome.status.get("phase") != Phase.PROGRESSING
            if settled or time.monotonic() > deadline or await stopping():
                return Outcome(outcome.status, tuple(events))
            if changed and self.publish is not None:  # show each step as it happens
                await self.publish(md.namespace, md.name, outcome.status)
            await asyncio.sleep(self.settings.settle_poll_seconds)

    async def _pass(
        self,
        md: ModelDeployment,
        body: dict[str, Any],
        claims: list[Claim],
        generation: int,
        previous: dict[str, Any],
    ) -> Outcome:
        """One pass: resolve, observe, plan, write the cluster, report."""
        key = object_key(md.namespace, md.name)
        now = now_text()
        ref = self.cluster_of(md)
        writer = self.clusters.writer(ref)
        identity = report.Identity(
            md.model_name, ref.serve_url + model_route(md.model_name), ref.grpc_address
        )
        mine = Claim(key, md.model_name, body["metadata"].get("creationTimestamp", ""))
        winner = conflict_winner(claims, mine)
        if winner is not None:
            async with writer.lock:
                writer.assign(key, None)
            message = (
                f"model name {md.model_name!r} on {ref.dashboard} is already served by "
                f"ModelDeployment {winner.key}; choose another spec.model.name"
            )
            return _blocked(
                Problem(Reason.NAME_CONFLICT, message), identity, previous, generation, now
            )

        storage = self._effective_storage(md.spec.storage)
        credentials: Credentials | None = None
        environment: dict[str, str] = {}
        try:
            if storage.secret_ref is not None:
                credentials, environment = await read_credentials(
                    md.namespace, storage.secret_ref.name
                )
            env_from = await read_env_from(md.namespace, md.spec.runtime_env.env_from)
            tokens = await read_auth_tokens(md.namespace, md.spec.auth)
        except CredentialsError as error:
            unreadable = Problem(Reason.CREDENTIALS_ERROR, str(error))
            return _blocked(unreadable, identity, previous, generation, now)
        md = dataclasses.replace(md, spec=dataclasses.replace(md.spec, storage=storage))
        store = ModelStore(storage, credentials=credentials)
        target, canary, problem = await self._observe_versions(md, generation, store)

        async with writer.lock:
            try:
                apps = await writer.observe()
            except DashboardError as error:
                unreachable = Problem(Reason.CLUSTER_UNREACHABLE, str(error))
                return _blocked(unreachable, identity, previous, generation, now)
            state = self.states.get(key) or RolloutState.from_status(previous)
            versions = [w.version for w in state.live] + [r.version for r in (target, canary) if r]
            by_version = {
                version: apps[name]
                for version in versions
                if (name := version_app_name(md.model_name, version)) in apps
            }
            decision = plan(
                md.spec,
                state,
                Observed(datetime.now(UTC), generation, target, canary, problem, by_version),
            )
            routing = ModelRouting(
                md,
                decision.live,
                decision.traffic,
                environment,
                env_from,
                self.settings.server_tokens + tokens,
            )
            seen = writer.serving(routing)
            writer.assign(key, routing)
            try:
                written = await writer.write(_known(claims, mine))
            except DashboardError as error:
                unreachable = Problem(Reason.CLUSTER_UNREACHABLE, str(error))
                return _blocked(unreachable, identity, previous, generation, now)
            self.states[key] = decision.state
        _log_new_failures(md, state, decision, by_version)
        status = report.status_of(
            decision,
            seen,
            config_pending=written.pending,
            identity=identity,
            previous=previous,
            generation=generation,
            now=now,
        )
        restarts = _restart_events(md.model_name, written.restarting)
        return Outcome(status, decision.events + restarts + _degraded_events(previous, status))

    async def remove(self, md: ModelDeployment, claims: Iterable[Claim]) -> None:
        """A ModelDeployment is being deleted: remove its applications, and only its.

        Under the object's lock, so a reconcile still running (its timer's last tick) cannot
        assign the routing again after it was forgotten and bring the applications back.
        """
        key = object_key(md.namespace, md.name)
        async with self.object_locks.setdefault(key, asyncio.Lock()):
            try:
                await self._withdraw(key, self.cluster_of(md), claims)
            finally:  # the object goes either way: a cluster that cannot be reached holds it
                # only for `delete_grace_seconds` (the handler's retries), and nothing reconciles
                # an object being deleted
                self.states.pop(key, None)
                self.statuses.pop(key, None)
                self.metrics.forget(md.namespace, md.name, key)
                self.resolutions = {k: v for k, v in self.resolutions.items() if k[0] != key}
        self.object_locks.pop(key, None)

    async def withdraw(self, md: ModelDeployment, claims: Iterable[Claim]) -> None:
        """`md` (as it was before spec.rayCluster changed) moved to another cluster: remove its
        applications from the one it left; `claims` are the ModelDeployments still there."""
        key = object_key(md.namespace, md.name)
        async with self.object_locks.setdefault(key, asyncio.Lock()):
            await self._withdraw(key, self.cluster_of(md), claims)

    async def _withdraw(self, key: str, ref: ClusterRef, claims: Iterable[Claim]) -> None:
        writer = self.clusters.writer(ref)
        async with writer.lock:
            writer.forget(key)
            await writer.observe()
            await writer.write({c.key: c.model_name for c in claims if c.key != key})


def _known(claims: Iterable[Claim], mine: Claim) -> dict[str, str]:
    """Every ModelDeployment on a cluster, `mine` included, by key: its model name."""
    return {claim.key: claim.model_name for claim in [*claims, mine]}


def _log_new_failures(
    md: ModelDeployment, before: RolloutState, decision: Plan, apps: dict[str, AppState]
) -> None:
    """The full text of a version's failure (Serve's traceback), once, in the operator's log:
    the status and Events carry only its one-line summary."""
    known = {(f.version, f.digest, f.generation) for f in before.failures}
    for failure in decision.state.failures:
        app = apps.get(failure.version)
        if (failure.version, failure.digest, failure.generation) in known or app is None:
            continue
        if app.message:
            logger.warning(
                "%s/%s version %s: %s\n%s",
                md.namespace,
                md.name,
                failure.version,
                failure.message,
                app.message,
            )


def _restart_events(model_name: str, restarting: tuple[str, ...]) -> tuple[Event, ...]:
    """An Event when a spec change replaces the replicas of this model's live versions."""
    prefix = version_app_name(model_name, "")
    versions = [name[len(prefix) :] for name in restarting if name.startswith(prefix)]
    if not versions:
        return ()
    message = (
        f"replicas of version {', '.join(versions)} restart: the spec changed what defines a "
        "version (runtime options, resources, storage, batching, runtime environment or "
        "credentials)"
    )
    return (Event(False, Reason.RESTARTING_REPLICAS, message),)


def _degraded(status: dict[str, Any]) -> dict[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Degraded" and condition.get("status") == "True":
            return dict(condition)
    return None


def _degraded_events(previous: dict[str, Any], status: dict[str, Any]) -> tuple[Event, ...]:
    """One Warning Event whenever the Degraded condition turns on or changes its reason."""
    now, before = _degraded(status), _degraded(previous)
    if now is None:
        return ()
    if before is not None and (before["reason"], before["message"]) == (
        now["reason"],
        now["message"],
    ):
        return ()
    return (Event(True, Reason(now["reason"]), now["message"]),)


def _blocked(
    problem: Problem, identity: report.Identity, previous: dict[str, Any], generation: int, now: str
) -> Outcome:
    """An Outcome for a failure that leaves the cluster as it is."""
    status = report.blocked_status(problem, identity, previous, generation, now)
    return Outcome(status, _degraded_events(previous, status))
