"""The route table a Ray cluster's HTTP ingress actually uses, from its `GET /-/routes`.

Serve reports an application's new route prefix before its ingress (HAProxy in
throughput-optimized mode, else Serve's proxy) routes by it; until then a model URL still
reaches whichever application held it before. So whoever says "this version serves the model
URL" (local mode's deploy, the operator's Ready condition) asks the ingress itself. Both
ingresses answer `/-/routes` with `{route_prefix: application}`.

The gRPC ingress has the same lag: right after a deploy HAProxy may hand a call for a new
version to Serve's gRPC proxy (its backup while the version's replica is not yet up there),
which answers NOT_FOUND until it knows the application. Serve's `ListApplications` method,
which HAProxy always sends to that proxy, says which applications it knows.
"""

from __future__ import annotations

import json
import urllib.request

ROUTES_PATH = "/-/routes"
LIST_APPLICATIONS = "/ray.serve.RayServeAPIService/ListApplications"


def route_table(serve_url: str, timeout_s: float = 5.0) -> dict[str, str] | None:
    """The ingress's route table, or None while it cannot answer (starting, no replicas,
    unreachable from here)."""
    try:
        with urllib.request.urlopen(
            serve_url.rstrip("/") + ROUTES_PATH, timeout=timeout_s
        ) as reply:
            table = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return (
        {str(prefix): str(app) for prefix, app in table.items()}
        if isinstance(table, dict)
        else None
    )


def grpc_applications(address: str, timeout_s: float = 5.0) -> set[str] | None:
    """The applications Serve's gRPC proxy at `address` (host:port) knows, or None while it
    cannot answer. Local mode's, so grpc and Ray's messages are imported here: the operator,
    which imports this module too, runs without Ray."""
    import grpc
    from ray.serve.generated.serve_pb2 import ListApplicationsRequest, ListApplicationsResponse

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            LIST_APPLICATIONS,
            request_serializer=ListApplicationsRequest.SerializeToString,
            response_deserializer=ListApplicationsResponse.FromString,
        )
        try:
            reply = call(ListApplicationsRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return None
    return set(reply.application_names)
