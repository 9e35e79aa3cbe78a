"""`exclusive_grpc_ports` on Serve's real gRPC server class and a real bind."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from ray.serve._private.grpc_util import gRPCGenericServer

from rayship_predictors.exclusive_ports import exclusive_grpc_ports, integer_reuseport


@pytest.fixture
def holder() -> Iterator[int]:
    """A port held by a gRPC server bound with SO_REUSEPORT on, as Serve's replicas bind."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    port = server.add_insecure_port("[::]:0")
    yield port
    # Never started, so nothing to stop; dropping it closes the listener.
    del server


def test_a_string_reuseport_value_becomes_the_integer_grpc_reads() -> None:
    options = [("grpc.max_send_message_length", 5), ("grpc.so_reuseport", "0")]
    assert integer_reuseport(options) == [
        ("grpc.max_send_message_length", 5),
        ("grpc.so_reuseport", 0),
    ]
    assert integer_reuseport([("grpc.so_reuseport", "1")]) == [("grpc.so_reuseport", 1)]
    assert integer_reuseport(None) == []


def test_serves_server_no_longer_binds_a_port_another_server_holds(holder: int) -> None:
    exclusive_grpc_ports()
    exclusive_grpc_ports()  # idempotent: one wrapper, not two
    server = gRPCGenericServer(lambda *_: None, extra_options=[("grpc.so_reuseport", "0")])
    with pytest.raises(RuntimeError, match="Failed to bind"):
        server.add_insecure_port(f"[::]:{holder}")


def test_a_caller_asking_for_reuseport_keeps_it(holder: int) -> None:
    exclusive_grpc_ports()
    server = gRPCGenericServer(lambda *_: None, extra_options=[("grpc.so_reuseport", "1")])
    assert server.add_insecure_port(f"[::]:{holder}") == holder
