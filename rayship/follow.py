"""Local mode follows `latest`: the operator's rollout rules, run inside `rayship serve`.

A team without Kubernetes publishes a new version folder (or moves the `latest` pointer) and
expects the running server to pick it up, as the operator does on a cluster. `Follower` keeps
one `RolloutState` per model in memory and, every `pollIntervalSeconds`, re-resolves `latest`
and calls the same pure `rayship.rollout.plan` the operator calls: the new version starts
beside the serving one, traffic moves when it runs, a version that fails to load is removed,
reported on the console and not retried, and the previous version stays warm for
`keepPreviousSeconds`. Models pinned to a version never change while the process runs: their
YAML is all there is.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rayship.conditions import Problem
from rayship.contract import version_app_name
from rayship.dashboard import ServeDashboard
from rayship.errors import InvalidSpec, RayshipError
from rayship.manifest import ModelDeployment
from rayship.rollout import Observed, RolloutState, Warm, plan, resolution_problem
from rayship.serveconfig import IngressOptions, ModelRouting, compose
from rayship.status import AppState, app_states
from rayship.storage import LATEST, ModelStore, ResolvedVersion, StorageError

logger = logging.getLogger(__name__)

GENERATION = 1
"""Local mode's spec never changes while it runs, so it is always its first generation."""

ROLLOUT_CHECK_SECONDS = 1.0
"""How often a model with a rollout in progress is checked (a poll interval otherwise)."""


@dataclass
class FollowedModel:
    """One model as local mode serves it: its spec, environment and rollout state."""

    routing: ModelRouting
    state: RolloutState
    next_poll: float = 0.0
    problem: Problem | None = field(default=None)

    @property
    def deployment(self) -> ModelDeployment:
        """The ModelDeployment from the YAML."""
        return self.routing.deployment

    @property
    def follows_latest(self) -> bool:
        """Whether anything about this model can change while the process runs."""
        model = self.deployment.spec.model
        canary = self.deployment.spec.rollout.canary
        asks_latest = model.version == LATEST or (canary is not None and canary.version == LATEST)
        return asks_latest and model.poll_interval_seconds > 0


def state_serving(routing: ModelRouting) -> RolloutState:
    """The rollout state of a model `deploy` brought up: its traffic, all of it running."""
    digests = {live.version: live.digest for live in routing.live}
    active, *rest = routing.traffic
    canary = rest[0][0] if rest else None
    return RolloutState(
        active=Warm(active[0], digests[active[0]]),
        live=tuple(Warm(version, digest) for version, digest in digests.items()),
        canary=canary,
    )


class Follower:
    """Re-resolves `latest` and rolls new versions out on a local Ray, until stopped."""

    def __init__(
        self,
        dashboard: ServeDashboard,
        http: IngressOptions,
        store: ModelStore,
        routings: list[ModelRouting],
        say: Callable[[str], None],
    ) -> None:
        self.dashboard = dashboard
        self.http = http
        self.store = store
        self.models = [FollowedModel(routing, state_serving(routing)) for routing in routings]
        self.say = say
        self._sent = compose(routings, http)

    @property
    def active(self) -> bool:
        """Whether any model can change: otherwise there is nothing to follow."""
        return any(model.follows_latest for model in self.models)

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set; a step that fails (storage or Ray away) is retried."""
        while not stop.is_set():
            try:
                self.step(time.monotonic())
            except RayshipError as error:
                logger.warning("could not check for new versions: %s", error)
            stop.wait(self._pause())

    def _pause(self) -> float:
        if any(model.state.target for model in self.models):
            return ROLLOUT_CHECK_SECONDS
        followed = [model.next_poll for model in self.models if model.follows_latest]
        return max(min(followed, default=time.monotonic() + 60) - time.monotonic(), 0.1)

    def step(self, now: float) -> None:
        """One pass: resolve what is due, plan every model, apply the config if it changed."""
        applications = app_states(self.dashboard.applications())
        for model in self.models:
            if not model.follows_latest:
                continue
            due = now >= model.next_poll
            if not (due or model.state.target):
                continue
            if due:
                model.next_poll = now + model.deployment.spec.model.poll_interval_seconds
            self._plan(model, applications)
        config = compose([model.routing for model in self.models], self.http)
        if config != self._sent:
            self.dashboard.put_config(config)
            self._sent = config

    def _plan(self, model: FollowedModel, applications: dict[str, AppState]) -> None:
        md = model.deployment
        target, canary, problem = self._resolve(md)
        names = {w.version for w in model.state.live} | {r.version for r in (target, canary) if r}
        apps = {
            version: applications[name]
            for version in names
            if (name := version_app_name(md.model_name, version)) in applications
        }
        observed = Observed(datetime.now(UTC), GENERATION, target, canary, problem, apps)
        decision = plan(md.spec, model.state, observed)
        for event in decision.events:
            self.say(f"{md.model_name}: {event.message}")
        if decision.problem is not None and decision.problem != model.problem:
            self.say(f"{md.model_name}: {decision.problem.message}")
        model.problem = decision.problem
        model.state = decision.state
        model.routing = dataclasses.replace(
            model.routing, live=decision.live, traffic=decision.traffic
        )

    def _resolve(
        self, md: ModelDeployment
    ) -> tuple[ResolvedVersion | None, ResolvedVersion | None, Problem | None]:
        """The versions the spec asks for now, or why they cannot be had (a storage outage
        keeps whatever serves)."""
        try:
            target = self.store.resolve(md.spec.model.storage_uri, md.spec.model.version)
            canary_spec = md.spec.rollout.canary
            canary = None
            if canary_spec is not None:
                canary = self.store.resolve(md.spec.model.storage_uri, canary_spec.version)
        except (StorageError, InvalidSpec) as error:
            return None, None, resolution_problem(error)
        return target, canary, None
