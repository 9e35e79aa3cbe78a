"""Direct-ingress gRPC ports that one replica holds alone.

Ray 2.60 starts each replica's direct-ingress gRPC server (the port HAProxy sends V2 gRPC
calls to) with the channel argument `grpc.so_reuseport` set to the string "0". gRPC reads
that argument only as an integer and ignores a string, so SO_REUSEPORT stays on and the bind
succeeds on a port another server already listens on. Serve allocates those ports per Ray
node from one fixed range, so two Ray clusters on one machine (two `rayship serve`, or one
beside the test session's Ray) hand out the same numbers, and the kernel then splits one
ingress's connections between its own replica and the other cluster's, which answers
NOT_FOUND for an application it does not have. With the bind exclusive, the second server's
bind fails and Serve's own retry allocates it another port.

`exclusive_grpc_ports` turns such string values into the integers gRPC reads; each Rayship
deployment calls it when its replica is constructed, before Serve starts that replica's
direct-ingress servers. It leaves the intent of every caller as it was ("1" stays on).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

REUSEPORT_OPTION = "grpc.so_reuseport"
_PATCHED_FLAG = "_rayship_integer_reuseport"


def integer_reuseport(options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    """`options` with a string `grpc.so_reuseport` value as the integer gRPC reads."""
    return [
        (key, int(value)) if key == REUSEPORT_OPTION and isinstance(value, str) else (key, value)
        for key, value in options or ()
    ]


def exclusive_grpc_ports() -> None:
    """Make Serve's gRPC servers in this process pass `grpc.so_reuseport` as an integer.

    Idempotent: a replica's deployments may call it more than once."""
    from ray.serve._private import grpc_util

    server_class = grpc_util.gRPCGenericServer
    if getattr(server_class, _PATCHED_FLAG, False):
        return
    original = server_class.__init__

    @functools.wraps(original)
    def init(self: Any, *args: Any, extra_options: Any = None, **kwargs: Any) -> None:
        original(self, *args, extra_options=integer_reuseport(extra_options), **kwargs)

    server_class.__init__ = init
    setattr(server_class, _PATCHED_FLAG, True)
