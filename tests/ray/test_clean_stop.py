"""`rayship serve` stopped the way process managers and scripts stop it.

docker stop, systemd and Kubernetes send SIGTERM; a script or test runner sends SIGINT to a
server it started in the background, which a non-interactive shell starts with SIGINT ignored.
Either must end the server promptly and completely: the request in flight answered, no process
it started left running, its HAProxy folder removed, and no native stack dump (Ray's SIGTERM
handler used to abort the process, which left Ray's agents and the folder behind). Each test
starts the real command with a Ray of its own, in a session of its own, so its processes can
be told from any other Ray on the machine. Bounds are generous: the machine may be small and
shared, and speed is not what is tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rayship.local import free_port
from support.local_mode import rayship, read_until
from support.models import python_model

pytestmark = pytest.mark.ray

STOP_BOUND_S = 60
"""How long a stop may take here: generous, as the machine may be small and busy."""

SLEEPER = '''
import pathlib
import time

from rayship_predictors.sdk import Predictor, Tensor

pathlib.Path({loading!r}).touch()
time.sleep({load_seconds})


class Sleeper(Predictor):
    """Echoes x after {seconds} s, leaving a file that says a request reached it."""

    inputs = (Tensor("x", "FP32", (-1,)),)
    outputs = (Tensor("y", "FP32", (-1,)),)

    def predict(self, inputs):
        pathlib.Path({started!r}).touch()
        time.sleep({seconds})
        return {{"y": inputs["x"]}}
'''

STACK_DUMPS = ("Fatal Python error", "SIGTERM received", "Traceback", "most recent call first")


@dataclass(frozen=True)
class Process:
    """One process as /proc shows it; (pid, started) names it even once its pid is reused."""

    pid: int
    started: int
    session: int
    cmdline: str


def processes() -> list[Process]:
    """Every process on the machine but the exited ones (zombies)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z":
            found.append(Process(int(entry.name), int(fields[19]), int(fields[3]), cmdline))
    return found


@dataclass(frozen=True)
class Footprint:
    """What a running `rayship serve` has on the machine: the processes of its session, the
    Ray session folder and the HAProxy folder they name."""

    session: int
    processes: frozenset[tuple[int, int]]
    ray_session: str
    haproxy_dir: Path

    def leftovers(self) -> list[str]:
        """The processes of the footprint still running, and any other naming its folders or
        in its session: what a complete stop leaves none of."""
        folders = (self.ray_session, f"{self.haproxy_dir}/")
        return [
            f"{p.pid} {p.cmdline[:120]}"
            for p in processes()
            if (p.pid, p.started) in self.processes
            or p.session == self.session
            or any(folder in p.cmdline for folder in folders)
        ]


def footprint(server: subprocess.Popen[str]) -> Footprint:
    """The footprint of `server` now (it must have started Ray).

    The HAProxy folder is read from the raylet's environment (`LocalRay` puts it there before
    ray.init), as HAProxy itself may not run yet.
    """
    members = [p for p in processes() if p.session == server.pid]
    raylet = next(p for p in members if "/raylet " in p.cmdline)
    ray_session = re.search(r"/[\w./-]*?/session_[\w-]+", raylet.cmdline)
    environment = Path(f"/proc/{raylet.pid}/environ").read_bytes().decode().split("\0")
    config = next(v for v in environment if v.startswith("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC="))
    assert ray_session is not None, raylet.cmdline
    return Footprint(
        session=server.pid,
        processes=frozenset((p.pid, p.started) for p in members),
        ray_session=ray_session.group(0),
        haproxy_dir=Path(config.split("=", 1)[1]).parent,
    )


def sleeper_yaml(folder: Path, version: str, seconds: float = 0, load_seconds: float = 0) -> Path:
    """A ModelDeployment of the `SLEEPER` model in `folder`, asking for `version`."""
    source = SLEEPER.format(
        loading=str(folder / "loading"),
        load_seconds=load_seconds,
        started=str(folder / "started"),
        seconds=seconds,
    )
    python_model(folder / "models", "sleeper", source)
    spec = folder / "sleeper.yaml"
    spec.write_text(
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\n"
        "metadata: {name: sleeper}\n"
        "spec: {model: {format: python, storageUri: 'file:models/sleeper', "
        f"version: '{version}', python: {{predictorClass: 'predictor:Sleeper'}}}}}}\n"
    )
    return spec


def wait_for_file(path: Path, server: subprocess.Popen[str], timeout_s: float = 240) -> None:
    """Until `path` exists; fails early, with what it printed, if `server` exits first."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if server.poll() is not None:
            output, _ = server.communicate()
            pytest.fail(f"rayship serve exited ({server.returncode}):\n{output}")
        assert time.monotonic() < deadline, f"{path} not there after {timeout_s}s"
        time.sleep(0.1)


def stop_and_check(server: subprocess.Popen[str], signum: int, printed: str) -> str:
    """Send `signum` to the server alone (as docker stop does) and check the stop is clean:
    prompt, exit status 0, no stack dump, no process and no HAProxy folder left."""
    seen = footprint(server)
    os.kill(server.pid, signum)
    rest, _ = server.communicate(timeout=STOP_BOUND_S)
    output = printed + rest
    assert server.returncode == 0, output
    assert "stopping" in rest, output
    assert not [dump for dump in STACK_DUMPS if dump in output], output
    assert seen.leftovers() == [], output
    assert not seen.haproxy_dir.exists(), output
    return output


@pytest.fixture
def server_cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    """Servers a test starts; whatever of their sessions still runs at its end is killed."""
    servers: list[subprocess.Popen[str]] = []
    yield servers
    for server in servers:
        for process in processes():
            if process.session == server.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
        server.wait()


def test_sigterm_answers_the_request_in_flight_then_leaves_nothing(
    tmp_path: Path, server_cleanup: list[subprocess.Popen[str]]
) -> None:
    """The model is pinned to a version, so the server waits for the stop itself."""
    spec = sleeper_yaml(tmp_path, version="1", seconds=3)
    port = free_port()
    server = rayship(
        "serve", str(spec), "--port", str(port), "--grpc-port", str(free_port()), cwd=tmp_path
    )
    server_cleanup.append(server)
    printed = read_until(server, "press Ctrl-C to stop")
    assert "serving sleeper (1 100%)" in printed, printed
    answers: list[dict[str, object] | str] = []
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [7]}]})
    url = f"http://127.0.0.1:{port}/v2/models/sleeper/infer"
    caller = threading.Thread(target=lambda: answers.append(infer(url, body.encode())))
    caller.start()
    wait_for_file(tmp_path / "started", server)

    stop_and_check(server, signal.SIGTERM, printed)

    caller.join(timeout=STOP_BOUND_S)
    (answer,) = answers
    assert isinstance(answer, dict), answer
    assert answer["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [1], "data": [7.0]}]
    with pytest.raises(urllib.error.URLError):  # nothing listens there any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=5)


def infer(url: str, body: bytes) -> dict[str, object] | str:
    """The V2 answer to one request, or what went wrong, as text."""
    try:
        with urllib.request.urlopen(url, body, timeout=STOP_BOUND_S) as response:
            answer: dict[str, object] = json.loads(response.read())
            return answer
    except OSError as error:
        return repr(error)


def test_sigint_stops_it_though_inherited_ignored(
    tmp_path: Path, server_cleanup: list[subprocess.Popen[str]]
) -> None:
    """Started as a non-interactive shell starts a background job; the model follows
    `latest`, so the stop comes while the server polls for new versions."""
    spec = sleeper_yaml(tmp_path, version="latest")
    ports = ("--port", str(free_port()), "--grpc-port", str(free_port()))
    server = rayship("serve", str(spec), *ports, cwd=tmp_path, ignore_sigint=True)
    server_cleanup.append(server)
    printed = read_until(server, "press Ctrl-C to stop")
    assert "serving sleeper (1 100%)" in printed, printed

    stop_and_check(server, signal.SIGINT, printed)


def test_sigterm_while_deploying_stops_without_serving(
    tmp_path: Path, server_cleanup: list[subprocess.Popen[str]]
) -> None:
    """The model takes ten minutes to load: the stop must not wait for it."""
    spec = sleeper_yaml(tmp_path, version="1", load_seconds=600)
    ports = ("--port", str(free_port()), "--grpc-port", str(free_port()))
    server = rayship("serve", str(spec), *ports, cwd=tmp_path)
    server_cleanup.append(server)
    wait_for_file(tmp_path / "loading", server)

    output = stop_and_check(server, signal.SIGTERM, "")

    assert "serving sleeper" not in output, output
