"""The operator's settings: one typed tree read from the environment once, at start-up.

The Helm chart and plain manifests set these variables, and no other operator code reads its
own settings from the environment, so tests construct `OperatorSettings` directly. What the
operator's clients read, they read where those clients' own tools do, and it is not ours to
configure: Ray's dashboard token in `rayship.dashboard` ($RAY_AUTH_TOKEN, else the file at
$RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as Ray's CLI finds it), AWS credentials in boto3's
standard chain, the cluster's address and credentials in kopf's and the Kubernetes client's
login. `rayship.storage` also reads $RAYSHIP_CACHE_DIR for its download cache, which the
operator never fills: it only lists versions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rayship.auth import server_tokens


@dataclass(frozen=True)
class OperatorSettings:
    """Every knob of the operator, with the variable that sets it."""

    default_dashboard: str = "http://127.0.0.1:8265"
    """RAYSHIP_RAY_DASHBOARD: Ray dashboard of the cluster used when spec.rayCluster is absent."""

    default_serve_url: str = "http://127.0.0.1:8000"
    """RAYSHIP_SERVE_URL: base URL of that cluster's Serve proxy, shown in status.url."""

    serve_http_host: str = "0.0.0.0"
    """RAYSHIP_SERVE_HTTP_HOST: the address Serve's proxy binds on the clusters (its http_options);
    the port is the one in the cluster's Serve URL."""

    serve_grpc_port: int = 8001
    """RAYSHIP_SERVE_GRPC_PORT: the port of Serve's V2 gRPC service on every cluster (its
    grpc_options, on the same address as the proxy), shown in status.grpcAddress beside the
    host of the cluster's Serve URL."""

    reconcile_seconds: float = 5.0
    """RAYSHIP_RECONCILE_SECONDS: how often each ModelDeployment is checked (rollout progress,
    `latest` polling, lost applications). Short enough to finish rollouts promptly; each check is
    one GET to the dashboard per cluster."""

    settle_seconds: float = 30.0
    """RAYSHIP_SETTLE_SECONDS: how long one reconcile keeps re-checking a ModelDeployment whose
    status says Progressing, before it writes the status and leaves the rest to the timer. A warm
    rollback or canary change settles in about a second this way instead of a timer period per
    step, and a small model's first version is Ready as soon as it loads; a version that takes
    longer (a big model, replicas waiting for a GPU node) is left to the timer after this."""

    settle_poll_seconds: float = 0.5
    """RAYSHIP_SETTLE_POLL_SECONDS: the pause between those checks (each one GET to the
    dashboard)."""

    build_grace_seconds: float = 10.0
    """RAYSHIP_BUILD_GRACE_SECONDS: how long a cluster's config may be held back while Serve
    builds a new application (any PUT during a build starts it over, see
    `clusters.builds_restarted`). Longer lets slow builds finish under many rollouts at once;
    shorter bounds how long another model's change (a rollback) waits behind a build."""

    delete_grace_seconds: float = 60.0
    """RAYSHIP_DELETE_GRACE_SECONDS: how long deleting a ModelDeployment retries a Ray cluster
    that cannot be reached before it lets the object go with a Warning Event (its applications
    may remain there): a cluster that was itself deleted must not hold every ModelDeployment
    that targeted it forever."""

    cluster_domain: str = "svc.cluster.local"
    """RAYSHIP_CLUSTER_DOMAIN: DNS suffix of Services, for KubeRay head services."""

    dashboard_port: int = 8265
    """RAYSHIP_KUBERAY_DASHBOARD_PORT: dashboard port on a KubeRay head service."""

    serve_port: int = 8000
    """RAYSHIP_KUBERAY_SERVE_PORT: Serve proxy port on a KubeRay head service."""

    s3_endpoint: str | None = None
    """RAYSHIP_S3_ENDPOINT: S3 endpoint for ModelDeployments that name none (in-cluster MinIO)."""

    s3_region: str | None = None
    """RAYSHIP_S3_REGION: S3 region for ModelDeployments that name none."""

    namespaces: tuple[str, ...] = field(default_factory=tuple)
    """RAYSHIP_NAMESPACES: comma-separated namespaces to watch; empty watches the whole cluster."""

    peering: str | None = None
    """RAYSHIP_PEERING: kopf peering name; with it, only one operator replica writes at a time
    (needs the peering CRDs from crds/ and a peering object of this name, which the chart
    creates). Without it the operator runs standalone, so run one replica."""

    peering_lifetime_seconds: int = 15
    """RAYSHIP_PEERING_LIFETIME_SECONDS: how long a replica's keep-alive in the peering object
    counts: a standby takes over this long after the active replica was killed (at once when
    it stops cleanly). kopf's own default, 60, left a minute without an operator."""

    metrics_address: str = "0.0.0.0:9090"
    """RAYSHIP_METRICS_ADDRESS: where the operator answers Prometheus scrapes (`host:port`, any
    path; `rayship_operator.metrics`); empty serves none."""

    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    """RAYSHIP_LIVENESS_ENDPOINT: where kopf answers liveness probes (the chart's probes use it)."""

    log_level: str = "INFO"
    """RAYSHIP_LOG_LEVEL: the least severe records logged, a `logging` level name (DEBUG, INFO,
    WARNING, ERROR). INFO shows what the operator did and why (each handler run, rollback and
    write held back) without kopf's per-event DEBUG detail."""

    server_tokens: tuple[str, ...] = field(default=(), repr=False)
    """RAYSHIP_AUTH_TOKENS: bearer tokens every model accepts (the chart's auth values), beside
    each ModelDeployment's own (spec.auth); none leaves models without spec.auth open."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        """Settings from environment variables (defaults where unset)."""
        env = os.environ if environ is None else environ
        defaults = cls()
        namespaces = tuple(
            n.strip() for n in env.get("RAYSHIP_NAMESPACES", "").split(",") if n.strip()
        )
        return cls(
            default_dashboard=env.get("RAYSHIP_RAY_DASHBOARD", defaults.default_dashboard),
            default_serve_url=env.get("RAYSHIP_SERVE_URL", defaults.default_serve_url),
            serve_http_host=env.get("RAYSHIP_SERVE_HTTP_HOST", defaults.serve_http_host),
            serve_grpc_port=int(env.get("RAYSHIP_SERVE_GRPC_PORT", defaults.serve_grpc_port)),
            reconcile_seconds=float(
                env.get("RAYSHIP_RECONCILE_SECONDS", defaults.reconcile_seconds)
            ),
            settle_seconds=float(env.get("RAYSHIP_SETTLE_SECONDS", defaults.settle_seconds)),
            settle_poll_seconds=float(
                env.get("RAYSHIP_SETTLE_POLL_SECONDS", defaults.settle_poll_seconds)
            ),
            build_grace_seconds=float(
                env.get("RAYSHIP_BUILD_GRACE_SECONDS", defaults.build_grace_seconds)
            ),
            delete_grace_seconds=float(
                env.get("RAYSHIP_DELETE_GRACE_SECONDS", defaults.delete_grace_seconds)
            ),
            cluster_domain=env.get("RAYSHIP_CLUSTER_DOMAIN", defaults.cluster_domain),
            dashboard_port=int(env.get("RAYSHIP_KUBERAY_DASHBOARD_PORT", defaults.dashboard_port)),
            serve_port=int(env.get("RAYSHIP_KUBERAY_SERVE_PORT", defaults.serve_port)),
            s3_endpoint=env.get("RAYSHIP_S3_ENDPOINT") or None,
            s3_region=env.get("RAYSHIP_S3_REGION") or None,
            namespaces=namespaces,
            peering=env.get("RAYSHIP_PEERING") or None,
            peering_lifetime_seconds=int(
                env.get("RAYSHIP_PEERING_LIFETIME_SECONDS", defaults.peering_lifetime_seconds)
            ),
            metrics_address=env.get("RAYSHIP_METRICS_ADDRESS", defaults.metrics_address),
            liveness_endpoint=env.get("RAYSHIP_LIVENESS_ENDPOINT", defaults.liveness_endpoint),
            log_level=env.get("RAYSHIP_LOG_LEVEL", defaults.log_level),
            server_tokens=server_tokens(env),
        )
