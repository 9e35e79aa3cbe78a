"""The environment of every Ray node that serves Rayship: one source for local mode and the chart.

Serve reads these variables when its controller, proxies and replicas start, so they must be in
the environment of the Ray processes themselves: local mode sets them before `ray.init`
(`rayship.local.serve_environment`, which adds what keeps several local Rays apart), and the
chart's RayCluster renders the same variables into every Ray container (a chart test compares
its render with `serving_environment`).
"""

from __future__ import annotations

from collections.abc import Mapping

from rayship.haproxy import IngressLimits

# Ray Serve's throughput-optimized mode with HAProxy ingress: HAProxy routes each request
# straight to an ingress replica's own HTTP server (no Python proxy actor in the path), and
# Serve's per-request bookkeeping is trimmed. bench/server_bench.py measured it 3-5x faster
# than Serve's defaults on a small model. Set RAY_SERVE_THROUGHPUT_OPTIMIZED=0 to opt out.
THROUGHPUT_OPTIMIZED = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
HAPROXY = "RAY_SERVE_ENABLE_HA_PROXY"
HAPROXY_BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"
HAPROXY_MAXCONN = "RAY_SERVE_HAPROXY_MAXCONN"
HAPROXY_CLIENT_TIMEOUT = "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"
GRPC_MESSAGE_LIMIT = "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"
LOG_BUFFER = "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"

DEFAULT_MAX_CONNECTIONS = 16384
DEFAULT_CLIENT_TIMEOUT_S = 60


def serving_environment(
    current: Mapping[str, str], launcher: str, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> dict[str, str]:
    """Serve's settings for Rayship on top of `current` (which wins for every variable it sets):
    nothing when `current` opts out of throughput-optimized mode, and no HAProxy settings when
    it opts out of HAProxy. `launcher` is `rayship.haproxy`'s launcher on the node.
    """
    env: dict[str, str] = {}
    if current.get(THROUGHPUT_OPTIMIZED, "1") != "1":
        return env
    env[THROUGHPUT_OPTIMIZED] = "1"
    # Throughput mode sends DeploymentHandle calls over Serve's gRPC transport, whose receivers
    # take 4 MiB by default: a canary split or a sibling's /versions/<v> URL failed on bodies
    # (or answers) the model's own URL carried. The HTTP layer bounds requests to
    # RAYSHIP_MAX_REQUEST_BYTES; this lets handles carry whatever that admits, and answers.
    env[GRPC_MESSAGE_LIMIT] = current.get(GRPC_MESSAGE_LIMIT) or str(2**31 - 1)
    # Throughput mode buffers a replica's log records (1000), flushing on ERROR records of Serve's
    # own logger only: a model failure's traceback, which reaches it through stderr at INFO, was
    # not in the log when the 500 said to look there. Access logs are off, so records are rare.
    env[LOG_BUFFER] = current.get(LOG_BUFFER) or "1"
    if current.get(HAPROXY, "1") != "1":
        return env
    env[HAPROXY] = "1"
    # Ray's template leaves one client able to starve the rest (`rayship.haproxy`): the
    # launcher adds header and keep-alive timeouts, a per-client connection limit and V2 error
    # pages; the total and the client inactivity are Serve's own knobs (defaults 4096, 3600 s).
    env[HAPROXY_BINARY] = launcher
    env[HAPROXY_MAXCONN] = current.get(HAPROXY_MAXCONN) or str(max_connections)
    env[HAPROXY_CLIENT_TIMEOUT] = current.get(HAPROXY_CLIENT_TIMEOUT) or str(
        DEFAULT_CLIENT_TIMEOUT_S
    )
    env.update(IngressLimits.from_env(current).environment())
    return env
