"""kopf handlers: translate Kubernetes events into `Reconciler` calls, nothing more.

Handlers are registered on a registry built from the settings (`build_registry`), so importing
this module has no side effects and the timer interval comes from the settings, not the import.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import kopf
import kubernetes
import urllib3

from rayship.conditions import Reason
from rayship.contract import CRD_VERSION, GROUP, PLURAL
from rayship.dashboard import DashboardError
from rayship.manifest import ModelDeployment, parse
from rayship_operator.reconcile import Claim, Outcome, Reconciler, object_key
from rayship_operator.settings import OperatorSettings

VERSION = CRD_VERSION
FINALIZER = f"{GROUP}/finalizer"
TICK = "tick"  # the id of the periodic reconcile
DELETE_RETRY_SECONDS = 5  # between tries to remove a model from a cluster that cannot be reached


def _post(body: kopf.Body, patch: kopf.Patch, outcome: Outcome) -> None:
    """Write the outcome: status into the patch, Events to the API server."""
    patch.setdefault("status", {}).update(outcome.status)
    for event in outcome.events:
        kind = "Warning" if event.warning else "Normal"
        kopf.event(body, type=kind, reason=event.reason.value, message=event.message)


async def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Write a ModelDeployment's status now, while its handler is still running (a rollout's
    steps, as they happen); the handler's own patch writes the last one."""
    api = kubernetes.client.CustomObjectsApi()
    await asyncio.to_thread(
        api.patch_namespaced_custom_object_status,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"status": status},
    )


async def being_deleted(namespace: str, name: str) -> bool:
    """Whether the ModelDeployment is marked for deletion, or gone.

    kopf processes an object's events one at a time, so while a handler settles a rollout
    (up to RAYSHIP_SETTLE_SECONDS) the delete waits behind it unseen; a settling reconcile
    asks the API server between passes instead, and steps aside for the delete.
    """
    api = kubernetes.client.CustomObjectsApi()
    try:
        body = await asyncio.to_thread(
            api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
    except kubernetes.client.ApiException as error:
        return bool(error.status == 404)
    except (OSError, urllib3.exceptions.HTTPError):
        return False  # the API server is away: keep settling; the timer retries anyway
    return bool(body["metadata"].get("deletionTimestamp"))


async def _remove(
    reconciler: Reconciler,
    body: kopf.Body,
    md: ModelDeployment,
    claims: list[Claim],
    runtime: datetime.timedelta,
) -> None:
    """Remove a deleted model's applications; while its cluster cannot be reached, retry for
    `delete_grace_seconds`, then let the object go and say what may be left."""
    try:
        await reconciler.remove(md, claims)
    except DashboardError as error:
        grace = reconciler.settings.delete_grace_seconds
        if runtime.total_seconds() < grace:
            retrying = f"{error}; retrying"
            raise kopf.TemporaryError(retrying, delay=DELETE_RETRY_SECONDS) from None
        message = (
            f"{error}: gave up after {grace:g} s; the applications of model "
            f"{md.model_name!r} may remain on that cluster"
        )
        kopf.warn(body, reason=Reason.APPLICATIONS_LEFT.value, message=message)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to one Reconciler."""
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(settings, publish=patch_status)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        # kopf would post its own log lines (a "Timer 'tick' succeeded" every period) as Events;
        # the operator posts the Events users read itself (`_post`), so only warnings go.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        # kopf retries failed API calls after 1, 1, 2, 3, 5, 8, 13 and 21 s: after a 30 s
        # outage of the API server the operator noticed its return up to 21 s late. Retries
        # at most 3 s apart, for about a minute, see it within 3 s.
        settings.networking.error_backoffs = [1, 1, 2, *[3] * 18]
        # A deleted object keeps its finalizer until its timer has stopped, and kopf looks
        # again only this often (default 60 s): a tick that was settling a rollout when the
        # delete came held `kubectl delete` for a minute. The tick now stops at once.
        settings.background.cancellation_polling = 1
        settings.peering.lifetime = reconciler.settings.peering_lifetime_seconds
        if reconciler.settings.metrics_address:
            reconciler.metrics.serve(reconciler.settings.metrics_address)
        kubernetes.config.load_config()  # for Secrets, read with the official client

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster service account or kubeconfig, as the official client finds them."""
        return kopf.login_via_client(**kwargs)

    @kopf.index(GROUP, VERSION, PLURAL, id="by_cluster", registry=registry)
    def by_cluster(body: kopf.Body, **_: Any) -> dict[str, Claim]:
        md = parse(dict(body))
        cluster = reconciler.cluster_of(md).dashboard
        created = body["metadata"].get("creationTimestamp", "")
        return {cluster: Claim(object_key(md.namespace, md.name), md.model_name, created)}

    def claims_for(md: ModelDeployment, by_cluster: kopf.Index[str, Claim]) -> list[Claim]:
        """Every ModelDeployment targeting the same cluster as `md`."""
        return list(by_cluster.get(reconciler.cluster_of(md).dashboard, []))

    async def _reconcile(
        body: kopf.Body,
        patch: kopf.Patch,
        meta: kopf.Meta,
        by_cluster: kopf.Index[str, Claim],
        stopped: kopf.DaemonStopped | None = None,
    ) -> None:
        md = parse(dict(body))
        generation = int(meta.get("generation") or 0)

        async def stopping() -> bool:
            flagged = stopped is not None and stopped.is_set()
            return flagged or await being_deleted(md.namespace, md.name)

        claims = claims_for(md, by_cluster)
        outcome = await reconciler.reconcile(md, dict(body), claims, generation, stopping)
        _post(body, patch, outcome)

    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec.rayCluster", id="move", registry=registry)
    async def moved(body: kopf.Body, old: Any, **kwargs: Any) -> None:
        """spec.rayCluster changed: take the model's applications off the cluster it left
        (`reconcile` then deploys it where it goes)."""
        spec = {k: v for k, v in body["spec"].items() if k != "rayCluster"}
        if old is not None:
            spec["rayCluster"] = old
        before = parse({**dict(body), "spec": spec})
        await reconciler.withdraw(before, claims_for(before, kwargs["by_cluster"]))

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="reconcile", registry=registry)
    async def changed(body: kopf.Body, patch: kopf.Patch, meta: kopf.Meta, **kwargs: Any) -> None:
        await _reconcile(body, patch, meta, kwargs["by_cluster"])

    @kopf.timer(
        GROUP, VERSION, PLURAL, id=TICK, interval=settings.reconcile_seconds, registry=registry
    )
    async def tick(body: kopf.Body, patch: kopf.Patch, meta: kopf.Meta, **kwargs: Any) -> None:
        # kopf sets `stopped` once it has seen the object being deleted
        await _reconcile(body, patch, meta, kwargs["by_cluster"], kwargs["stopped"])

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="remove", registry=registry)
    async def deleted(body: kopf.Body, runtime: datetime.timedelta, **kwargs: Any) -> None:
        md = parse(dict(body))
        claims = claims_for(md, kwargs["by_cluster"])
        await _remove(reconciler, body, md, claims, runtime)

    return registry
