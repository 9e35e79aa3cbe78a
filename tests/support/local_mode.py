"""`rayship serve` run as a user runs it: the real command in a subprocess of its own.

It starts a Ray of its own beside the test session's, so it runs as a subprocess that owns it,
in a session of its own: a signal to its process group reaches all of it, and the processes it
started can be told from other Ray sessions on the machine by their session id.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def rayship(*args: str, cwd: Path, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    """`rayship ARGS...` in `cwd`, stdout and stderr together, text, in a new session.

    `ignore_sigint` starts it with SIGINT ignored, as a non-interactive shell starts a
    background job: through `sh`, which sets it ignored and execs the command, keeping its pid
    (a `preexec_fn` would run in a fork of this process, threads and all).
    """
    command = [sys.executable, "-P", "-m", "rayship.cli", *args]
    if ignore_sigint:
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], text: str, timeout_s: float = 240) -> str:
    """What `process` printed up to the first line holding `text` (or up to its end)."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            break
    return "".join(lines)
