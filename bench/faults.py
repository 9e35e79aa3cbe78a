"""The fault report: each fault of the fault suite under steady load, as one table.

    .venv/bin/python bench/faults.py

It starts the e2e suite's real parts in this process (`started_parts` in operator_bench.py: the
test control plane, moto's S3, a local Ray with Serve) and the operator, with S3 and the Ray
dashboard behind forwarders that can be cut (`fault_stack` in tests/e2e/faults.py), then runs
every scenario of tests/e2e/faults.py in turn, each on its own ModelDeployment under two V2
clients sending 50 requests a second in all. Per fault it prints the requests sent and failed,
the failures the goal allows (requests in flight on a killed process; none for outages), and the
seconds from the end of the fault until the model serves as it should and its status says so.
tests/e2e/test_faults.py runs the same scenarios in CI and asserts the goals.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # never the repo root

from operator_bench import NAMESPACE, log, started_parts

from e2e.faults import SCENARIOS, FaultReport, fault_stack

HEADER = (
    "| fault | requests sent | failed | failures allowed | seconds until right again |\n"
    "| --- | --- | --- | --- | --- |"
)


def verdict(found: FaultReport) -> str:
    met = found.failed <= found.allowed
    return f"{found.row()}{'' if met else ' goal not met: ' + '; '.join(found.errors)}"


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rayship-faults-"))
    reports = []
    try:
        with (
            started_parts(workdir) as parts,
            fault_stack(
                parts.plane,
                NAMESPACE,
                parts.serve,
                parts.s3,
                parts.models,
                workdir / "operator.log",
            ) as faults,
        ):
            for scenario in SCENARIOS:
                log(f"fault: {scenario.__name__}")
                reports.append(scenario(faults))
    except BaseException:
        log(f"failed; its files (the operator's log among them) are kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print("\n### Faults under steady load (iris ONNX, 2 clients, 50 requests/s)\n")
    print(HEADER)
    for found in reports:
        print(verdict(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
