"""`rayship serve` as a user runs it: the README's first command, its output, its REST and gRPC
endpoints and its Ctrl-C.

It starts a Ray of its own beside the session's, so it runs as a subprocess that owns it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from rayship.local import free_port
from support.local_mode import rayship, read_until
from support.prometheus import scrape_until, total

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
REQUESTS = "ray_rayship_inference_requests_total"


def test_serve_example_then_stop_with_ctrl_c(example_models: Path, tmp_path: Path) -> None:
    yaml_file = tmp_path / "iris-onnx.yaml"
    yaml_file.write_text((REPO / "examples" / "iris-onnx.yaml").read_text())
    (tmp_path / "models").symlink_to(example_models)
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    process = rayship(
        "serve", str(yaml_file), "--port", str(port), "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port), cwd=tmp_path,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        printed = "".join(lines)
        url = f"http://127.0.0.1:{port}/v2/models/iris-onnx"
        assert f"serving iris-onnx (2 100%) at {url}" in printed, printed
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert f"metrics at {metrics_url}" in printed, printed
        assert f"V2 gRPC at 127.0.0.1:{grpc_port}" in printed, printed
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip
        request = urllib.request.Request(f"{url}/infer", json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["model_version"] == "2"
        assert {output["name"] for output in answer["outputs"]} == {"probabilities", "label"}
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        flower = triton_grpc.InferInput("input", [1, 4], "FP32")
        flower.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
        result = grpc_client.infer("iris-onnx", [flower])
        assert result.get_response().model_version == "2"
        assert result.as_numpy("label").tolist() == [answer_label(answer)]
        labels = {"model": "iris-onnx", "version": "2", "code": "200"}
        scrape_until(metrics_url, lambda samples: total(samples, REQUESTS, **labels) == 2)
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        assert process.returncode == 0, printed + rest
        assert "stopping" in rest
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with pytest.raises(urllib.error.URLError):  # nothing listens there any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=5)


def answer_label(answer: dict[str, Any]) -> Any:
    """The `label` output's one value in a V2 JSON answer."""
    (label,) = (output["data"][0] for output in answer["outputs"] if output["name"] == "label")
    return label


@pytest.mark.parametrize("flag", ["--port", "--grpc-port"])
def test_a_taken_port_is_refused_before_ray_starts_naming_its_flag(
    example_models: Path, tmp_path: Path, flag: str
) -> None:
    """Two `rayship serve` on one machine must not share a port: HAProxy would fail inside
    Serve and take both endpoints down with a message about neither."""
    yaml_file = tmp_path / "iris-onnx.yaml"
    yaml_file.write_text((REPO / "examples" / "iris-onnx.yaml").read_text())
    (tmp_path / "models").symlink_to(example_models)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port()), flag: str(port)}
        process = rayship("serve", str(yaml_file), *(x for p in ports.items() for x in p),
                          cwd=tmp_path)  # fmt: skip
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert f"{flag} {port}: cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output
    assert "Ray" not in output  # refused before a Ray started


def test_invalid_yaml_is_refused_before_ray_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\n"
        "spec: {model: {format: tensorflow, storageUri: 's3://m/x'}}\n"
    )
    process = rayship("serve", str(bad), cwd=tmp_path)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "ModelDeployment 'x' is invalid" in output
    assert "spec.model.format" in output
    assert "Traceback" not in output


def test_missing_version_names_the_uri(tmp_path: Path) -> None:
    (tmp_path / "models" / "m" / "1").mkdir(parents=True)
    spec = tmp_path / "m.yaml"
    spec.write_text(
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec: {model: {format: onnx, storageUri: 'file:models/m', version: '7'}}\n"
    )
    process = rayship("serve", str(spec), cwd=tmp_path)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert f"{(tmp_path / 'models' / 'm').as_uri()}/7/ not found" in output
    assert "Traceback" not in output


def test_two_servers_on_one_machine_answer_only_their_own_grpc_calls(
    example_models: Path, tmp_path: Path
) -> None:
    """Two `rayship serve` side by side (and the test session's Ray beside them): each replica's
    gRPC port is its own, so every call reaches the server it was sent to. Serve gives the
    replicas of both the same port numbers; bound with SO_REUSEPORT, the kernel would hand
    some of one server's connections to the other, which answers NOT_FOUND
    (`rayship_predictors.exclusive_ports`)."""
    example = (REPO / "examples" / "iris-onnx.yaml").read_text()
    (tmp_path / "models").symlink_to(example_models)
    servers: list[tuple[str, int, subprocess.Popen[str]]] = []
    try:
        for name in ("iris-a", "iris-b"):
            yaml_file = tmp_path / f"{name}.yaml"
            yaml_file.write_text(example.replace("name: iris-onnx", f"name: {name}"))
            grpc_port = free_port()
            process = rayship("serve", str(yaml_file), "--port", str(free_port()),
                              "--grpc-port", str(grpc_port), cwd=tmp_path)  # fmt: skip
            servers.append((name, grpc_port, process))
        for name, _, process in servers:
            printed = read_until(process, "press Ctrl-C to stop")
            assert f"serving {name} (2 100%)" in printed, printed
        flowers = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
        with ThreadPoolExecutor(CONCURRENT_CALLS) as pool:
            for name, grpc_port, _ in servers:
                calls = [pool.submit(grpc_infer, grpc_port, name, flowers) for _ in range(40)]
                failures = [str(error) for call in calls if (error := call.exception())]
                assert not failures, f"{len(failures)} of 40 calls to {name} failed: {failures[0]}"
    finally:
        for _, _, process in servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for _, _, process in servers:
            try:
                process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


CONCURRENT_CALLS = 8
"""Concurrent calls make the ingress open several connections to each replica port."""


def grpc_infer(grpc_port: int, model: str, flowers: np.ndarray) -> None:
    """One V2 gRPC ModelInfer of `model` on a client of its own (a connection of its own)."""
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        flower = triton_grpc.InferInput("input", list(flowers.shape), "FP32")
        flower.set_data_from_numpy(flowers)
        assert client.infer(model, [flower]).get_response().model_name == model
    finally:
        client.close()
