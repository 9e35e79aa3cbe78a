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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rayship.dashboard import DashboardError
from rayship.manifest import ModelDeployment
from rayship.serveconfig import ModelRouting, model_route, version_app_name
from rayship.spec import StorageSpec
from rayship.storage import Credentials, ModelNotFound, ModelStore, ResolvedVersion, StorageError
from rayship_operator import report
from rayship_operator.clusters import ClusterRef, Clusters, cluster_for
from rayship_operator.credentials import CredentialsError, read_credentials
from rayship_operator.rollout import Event, Observed, RolloutState, plan
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


@dataclass
class _Resolution:
    generation: int
    at: float
    resolved: ResolvedVersion


@dataclass
class Reconciler:
    """Operator-wide state: cluster writers, latest rollout states, version resolutions."""

    settings: OperatorSettings
    clusters: Clusters = field(default_factory=Clusters)
    states: dict[str, RolloutState] = field(default_factory=dict)
    resolutions: dict[tuple[str, str], _Resolution] = field(default_factory=dict)

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
        resolved = await asyncio.to_thread(store.resolve, uri, version)
        self.resolutions[key] = _Resolution(generation, time.monotonic(), resolved)
        return resolved

    async def _observe_versions(
        self, md: ModelDeployment, generation: int, store: ModelStore
    ) -> tuple[ResolvedVersion | None, ResolvedVersion | None, tuple[str, str] | None]:
        """Resolved target and canary, or the problem that stopped resolution."""
        try:
            target = await self._resolve(md, md.spec.model.version, generation, store)
            canary_spec = md.spec.rollout.canary
            canary = None
            if canary_spec is not None:
                canary = await self._resolve(md, canary_spec.version, generation, store)
        except ModelNotFound as error:
            return None, None, ("ModelNotFound", str(error))
        except (StorageError, ValueError) as error:
            return None, None, ("StorageError", str(error))
        return target, canary, None

    async def reconcile(
        self,
        md: ModelDeployment,
        body: dict[str, Any],
        claims: Iterable[Claim],
        generation: int,
    ) -> Outcome:
        """One pass for one ModelDeployment: `md` is `body` parsed (its status and metadata are
        read from `body`)."""
        key = object_key(md.namespace, md.name)
        previous: dict[str, Any] = dict(body.get("status") or {})
        now = now_text()
        ref = self.cluster_of(md)
        writer = self.clusters.writer(ref)
        claims = list(claims)
        mine = Claim(key, md.model_name, body["metadata"].get("creationTimestamp", ""))
        winner = conflict_winner(claims, mine)
        if winner is not None:
            async with writer.lock:
                writer.assign(key, None)
            message = (
                f"model name {md.model_name!r} on {ref.dashboard} is already served by "
                f"ModelDeployment {winner.key}; choose another spec.model.name"
            )
            return _problem("NameConflict", message, previous, generation, now)

        storage = self._effective_storage(md.spec.storage)
        credentials: Credentials | None = None
        environment: dict[str, str] = {}
        if storage.secret_ref is not None:
            try:
                credentials, environment = await read_credentials(
                    md.namespace, storage.secret_ref.name
                )
            except CredentialsError as error:
                return _problem("CredentialsError", str(error), previous, generation, now)
        md = dataclasses.replace(md, spec=dataclasses.replace(md.spec, storage=storage))
        store = ModelStore(storage, credentials=credentials)
        target, canary, problem = await self._observe_versions(md, generation, store)

        async with writer.lock:
            try:
                apps = await writer.observe()
            except DashboardError as error:
                return _problem("ClusterUnreachable", str(error), previous, generation, now)
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
            routing = ModelRouting(md, decision.live, decision.traffic, None, environment)
            writer.assign(key, routing)
            try:
                sent = await writer.write({c.key for c in claims} | {key})
            except DashboardError as error:
                return _problem("ClusterUnreachable", str(error), previous, generation, now)
            self.states[key] = decision.state
            if sent or not writer.traffic_in_effect(routing):
                decision = report.applying_traffic(decision)
        url = ref.serve_url + model_route(md.model_name)
        status = report.status_from_plan(decision, url, previous, generation, now)
        return Outcome(status, decision.events + _degraded_events(previous, status))

    async def remove(self, md: ModelDeployment, claims: Iterable[Claim]) -> None:
        """A ModelDeployment is being deleted: remove its applications, and only its."""
        key = object_key(md.namespace, md.name)
        writer = self.clusters.writer(self.cluster_of(md))
        async with writer.lock:
            writer.forget(key)
            await writer.observe()
            await writer.write({c.key for c in claims} - {key})
        self.states.pop(key, None)
        self.resolutions = {k: v for k, v in self.resolutions.items() if k[0] != key}


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
    logger.warning("%s: %s", now["reason"], now["message"])
    return (Event(True, now["reason"], now["message"]),)


def _problem(
    reason: str, message: str, previous: dict[str, Any], generation: int, now: str
) -> Outcome:
    """An Outcome for a failure that leaves the cluster as it is."""
    status = report.problem_status(reason, message, previous, generation, now)
    return Outcome(status, _degraded_events(previous, status))
