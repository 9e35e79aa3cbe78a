"""The processes a local Ray leaves behind, found through /proc and ended.

`ray.shutdown` does not always end what Ray started: its agents and the HAProxy Serve starts can
outlive their parents, re-parented to init. `rayship.local.LocalRay` finds its own by an
environment variable and by descent (`descendants`), and ends them (`end_processes`). Linux
only: without /proc nothing is found, and nothing is ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessEntry:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    started: int
    """Clock ticks from boot to the process's start: tells a reused pid from the process."""
    cmdline: bytes


def read_process(pid: int) -> ProcessEntry | None:
    """The process `pid`, or None when there is none (or it has exited and is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name in parentheses may hold spaces and parentheses itself.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return ProcessEntry(pid, ppid=int(fields[1]), started=int(fields[19]), cmdline=cmdline)


def process_table() -> list[ProcessEntry]:
    """Every running process; empty where there is no /proc (then nothing is ever swept)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = (read_process(int(entry.name)) for entry in proc.iterdir() if entry.name.isdigit())
    return [entry for entry in found if entry is not None]


def descendants(table: list[ProcessEntry], roots: set[ProcessEntry]) -> list[ProcessEntry]:
    """`roots` and the processes of `table` below them (children, their children, ...)."""
    children: dict[int, list[ProcessEntry]] = {}
    for entry in table:
        children.setdefault(entry.ppid, []).append(entry)
    found = list(roots)
    pending = list(roots)
    while pending:
        below = [entry for entry in children.get(pending.pop().pid, []) if entry not in roots]
        found.extend(below)
        pending.extend(below)
    return found


def mentioning(table: list[ProcessEntry], folder: Path) -> list[ProcessEntry]:
    """The processes whose command line names a path inside `folder` (HAProxy names its
    config in the LocalRay's own folder, so only that LocalRay's are found)."""
    needle = f"{folder}/".encode()
    return [entry for entry in table if needle in entry.cmdline and entry.pid != os.getpid()]


def has_variable(pid: int, name: str, value: str) -> bool:
    """Whether process `pid` was started with `name=value` in its environment."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return False
    return f"{name}={value}".encode() in environment.split(b"\0")


def end_processes(find: Callable[[], list[ProcessEntry]], grace_s: float = 2.0) -> None:
    """End the processes `find` returns: SIGTERM first, SIGKILL to those it still returns
    after `grace_s`, until it returns none (or another `grace_s` has passed).

    `find` is asked again and again, so a process started meanwhile (a parent that is ending
    may still fork) is ended too.
    """
    start = time.monotonic()
    sent: dict[tuple[int, int], int] = {}
    while running := find():
        waited = time.monotonic() - start
        if waited > 2 * grace_s:
            logger.warning("processes left running: %s", sorted(entry.pid for entry in running))
            return
        signum = signal.SIGKILL if waited > grace_s else signal.SIGTERM
        for entry in running:
            if sent.get((entry.pid, entry.started)) != signum:
                sent[(entry.pid, entry.started)] = signum
                with contextlib.suppress(OSError):
                    os.kill(entry.pid, signum)
        time.sleep(0.05)
