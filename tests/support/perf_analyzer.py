"""Triton's perf_analyzer, unmodified, against Rayship: a short closed-loop measurement whose
report row a test reads (`scripts/perf-analyzer` installs the binary into ~/.cache/rayship/tools
on first use)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

PERF_ANALYZER = Path(__file__).resolve().parents[2] / "scripts" / "perf-analyzer"


def perf_analyzer(
    address: str, model: str, protocol: str, shape: str, report: Path, *, batch: str = "1"
) -> dict[str, str]:
    """Run perf_analyzer at `address` (host:port) over `protocol` (`http` or `grpc`): it reads
    the model's metadata and config, then infers `batch` rows a call at concurrency 2. Fails
    the test unless it exits 0; returns its CSV report's row."""
    result = subprocess.run(
        [
            str(PERF_ANALYZER),
            *("-m", model, "-u", address, "-i", protocol, "--shape", shape, "-b", batch),
            *("--concurrency-range", "2", "--measurement-interval", "500"),
            *("--max-trials", "4", "--stability-percentage", "999", "-f", str(report)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = list(csv.DictReader(report.open()))
    return row
