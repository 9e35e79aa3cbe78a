"""A real S3 endpoint for tests: moto's standalone server in a child process on loopback.

Fixtures:

- `s3_server` (session): one shared server. Tests isolate themselves by bucket: take a fresh
  one from `s3_server.new_bucket()`. Never stop it.
- `private_s3_server` (function): a server of the test's own, which it may `stop()` to see
  how code behaves when S3 goes down. Costs about a second to start.
- `aws_test_env` (session, used by both): fake credentials and region in the environment, and
  the developer's own AWS config files, profile and endpoint overrides hidden, so nothing
  reaches real AWS.

The server is a child process rather than moto's in-process `ThreadedMotoServer` so a test can
kill it outright, and so a crashed pytest cannot leave it behind: the child exits on its own
once its parent is gone. Teardown stops it by process id whatever the test's outcome.

Run as `python -m support.s3 PORT PARENT_PID` (with `tests/` on the path), it is that child.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from rayship.spec import StorageSpec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
_TESTS_DIR = Path(__file__).resolve().parent.parent
_START_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 5.0


@dataclass
class S3Server:
    """A running moto server, a boto3 client for it and helpers to lay out model versions."""

    endpoint_url: str
    client: S3Client
    process: subprocess.Popen[bytes]
    log_path: Path
    _buckets: int = field(default=0, init=False)

    @property
    def storage(self) -> StorageSpec:
        """The `StorageSpec` that points rayship at this server."""
        return StorageSpec(endpoint_url=self.endpoint_url, region=REGION)

    def new_bucket(self, stem: str = "models") -> str:
        """Create a bucket no other test uses and return its name."""
        self._buckets += 1
        name = f"{stem}-{self._buckets}-{uuid.uuid4().hex[:8]}"
        self.client.create_bucket(Bucket=name)
        return name

    def upload_version(
        self, uri: str, version: str, files: Path | Mapping[str, bytes]
    ) -> dict[str, str]:
        """Upload a folder, or a mapping of relative key to content, as one version of `uri`.

        `uri` is a model prefix `s3://bucket/prefix`. Returns each relative key's ETag.
        """
        bucket, prefix = _split(uri)
        if isinstance(files, Path):
            contents = {
                path.relative_to(files).as_posix(): path.read_bytes()
                for path in sorted(files.rglob("*"))
                if path.is_file()
            }
        else:
            contents = dict(files)
        return {
            key: self.client.put_object(Bucket=bucket, Key=f"{prefix}{version}/{key}", Body=data)[
                "ETag"
            ]
            for key, data in contents.items()
        }

    def set_latest(self, uri: str, version: str) -> None:
        """Write the `latest` pointer object of a model prefix."""
        bucket, prefix = _split(uri)
        self.client.put_object(Bucket=bucket, Key=f"{prefix}latest", Body=f"{version}\n".encode())

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server by its process id (terminate, then kill); safe to call twice."""
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()


def _split(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` into the bucket and the key prefix with a trailing slash."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_s3_server(workdir: Path) -> S3Server:
    """Start moto's server on a free loopback port and wait until it answers."""
    port = _free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"moto-{port}.log"
    # MOTO_PORT tells moto which port to write into URLs it hands out.
    env = {**os.environ, "PYTHONPATH": str(_TESTS_DIR), "MOTO_PORT": str(port)}
    with log_path.open("wb") as log:
        # -P: the child's working directory (never the repository root) stays off sys.path.
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "support.s3", str(port), str(os.getpid())],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=REGION)
    server = S3Server(endpoint_url, client, process, log_path)
    try:
        _wait_until_up(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_up(server: S3Server) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not server.running:
            break
        try:
            with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=5):
                return
        except OSError:  # refused, reset, or a slow first answer on a busy machine (timeout)
            time.sleep(0.05)
    log = server.log_path.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"moto server at {server.endpoint_url} did not start; its log:\n{log}")


@pytest.fixture(scope="session")
def aws_test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake AWS credentials and region for the session; the developer's AWS setup hidden."""
    missing = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as env:
        for name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_CA_BUNDLE",
        ):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(missing))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def s3_server(aws_test_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server for the whole session; use a fresh bucket per test and never stop it."""
    server = start_s3_server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_s3_server(aws_test_env: None, tmp_path: Path) -> Iterator[S3Server]:
    """A moto server for one test, which the test may `stop()` to simulate S3 going down."""
    server = start_s3_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _serve_until_orphaned(port: int, parent_pid: int) -> None:
    """Run moto's server, exiting as soon as the process that started it is gone."""

    def watch_parent() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    from moto.server import main

    main(["--host", "127.0.0.1", "--port", str(port)])


if __name__ == "__main__":
    _serve_until_orphaned(int(sys.argv[1]), int(sys.argv[2]))
