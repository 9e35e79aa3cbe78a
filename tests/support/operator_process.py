"""The operator as a real subprocess (`python -P -m rayship_operator`), started and stopped by pid.

`-P` keeps the working directory off sys.path, so the repository's operator/ folder can never
shadow the standard library. Restarting it in a test is a real kill and a real start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from controlplane.cluster import free_port


class OperatorProcess:
    """One running operator; `log` collects its output for failure messages.

    Its metrics are served on a free loopback port unless `env` names one (the default, 9090
    on every interface, may be taken, and two operators in a test would share it); `metrics_url`
    is where to scrape them.
    """

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = {"RAYSHIP_METRICS_ADDRESS": f"127.0.0.1:{free_port()}", **env}
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the operator (appending to the same log)."""
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "rayship_operator"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; by process group."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL, as a lost node or the OOM killer would: nothing of it runs after."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def restart(self) -> None:
        """Stop and start again: the in-memory state is gone, the status is not."""
        self.stop()
        self.start()

    @property
    def metrics_url(self) -> str:
        """The operator's Prometheus endpoint."""
        return f"http://{self.env['RAYSHIP_METRICS_ADDRESS']}/metrics"

    def tail(self, lines: int = 60) -> str:
        """The end of the operator's log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def run_operator(env: Mapping[str, str], log: Path) -> Iterator[OperatorProcess]:
    """An operator running for the duration of the block, stopped whatever happens."""
    operator = OperatorProcess(env, log)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
