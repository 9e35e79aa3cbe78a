"""One abusive client cannot stop local mode's ingress for everyone (`rayship.haproxy`).

Run against the session's real HAProxy. The abuser connects from 127.0.0.1 and the good client
from 127.0.0.2 (both loopback, two client addresses to the per-client limit), as two hosts
would. Before the limits, about 4,200 idle connections filled the ingress and good requests
timed out; a slow client could hold a connection forever.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rayship.haproxy import IngressLimits
from support.http import http_call
from support.models import model_deployment, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, example_models: Path) -> ServeCluster:
    """Any model: Serve starts its ingress with the first application."""
    iris = {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}
    serve_cluster.deploy([route(model_deployment("iris", {"model": iris}), {"2": 100})])
    return serve_cluster


ABUSIVE_CONNECTIONS = 5000  # over Serve's own default maxconn of 4096
GOOD_CLIENT = "127.0.0.2"


@contextmanager
def idle_connections(cluster: ServeCluster, count: int) -> Iterator[list[socket.socket]]:
    """Open `count` connections that send nothing (those refused outright are skipped)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                sockets.append(
                    socket.create_connection((cluster.http.host, cluster.http.port), timeout=5)
                )
            except OSError:
                continue
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def still_open(sock: socket.socket) -> bool:
    """Whether the ingress kept this idle connection (one it closed reads as EOF or reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def good_request(cluster: ServeCluster) -> tuple[int, float]:
    """A health request from another client address; its status and how long it took."""
    started = time.monotonic()
    with socket.create_connection(
        (cluster.http.host, cluster.http.port), timeout=10, source_address=(GOOD_CLIENT, 0)
    ) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = sock.recv(65536)
    return int(answer.split()[1]), time.monotonic() - started


def test_thousands_of_idle_connections_leave_room_for_others(served: ServeCluster) -> None:
    limit = IngressLimits().connections_per_client
    with idle_connections(served, ABUSIVE_CONNECTIONS) as sockets:
        time.sleep(1)  # the ingress closes those over the limit as they arrive
        kept = sum(still_open(sock) for sock in sockets)
        status, took = good_request(served)
    assert kept <= limit
    assert status == 200
    assert took < 10  # the good client was served, not queued behind the abuser


def test_a_client_that_never_finishes_its_headers_is_let_go(
    served: ServeCluster,
) -> None:
    limit = IngressLimits().header_timeout_s
    started = time.monotonic()
    with socket.create_connection((served.http.host, served.http.port), timeout=limit + 20) as sock:
        sock.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        answer = read_until_closed(sock)
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer  # HAProxy's own page (rayship.haproxy)
    assert took < limit + 10, took


def test_unknown_paths_get_a_v2_404(served: ServeCluster) -> None:
    status, headers, body = http_call(f"{served.url}/nowhere")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "no route /nowhere"}
