"""spec.runtimeEnv on a real Ray, through `rayship serve`'s own path (load the YAML, look the
envFrom variables up locally, resolve, compose, PUT): Ray installs a package from PyPI that the
base environment lacks when the replica starts, and the replica sees the variables.

Ray makes one virtualenv per distinct pip list and node. From a virtualenv, as in this
repository's `.venv`, it first copies the whole environment, which dominates the time the
deploy below takes (see README "Per-model runtime environment").
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rayship.local import LocalSecrets, routing_for
from rayship.manifest import load_file
from rayship.storage import ModelStore
from support.models import (
    ENVIRONMENT_PREDICTOR,
    ENVIRONMENT_REQUIREMENT,
    environment_report,
    python_model,
)
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

# Copying this repository's 6.5 GB .venv took 48 to 77 s on the 2-core machine with other
# suites running, pip 4 to 6 s, the whole deploy 83 s; the bound leaves room for a slower disk
# within pytest's 600 s per test.
INSTALL_TIMEOUT_S = 480

YAML = f"""
apiVersion: serving.rayship.io/v1alpha1
kind: ModelDeployment
metadata: {{name: reporter}}
spec:
  model:
    format: python
    storageUri: file:models/reporter
    python: {{predictorClass: "predictor:Reporter"}}
  runtimeEnv:
    pip: ["{ENVIRONMENT_REQUIREMENT}"]
    env: [{{name: GREETING, value: hello}}]
    envFrom:
      - secretRef: {{name: api}}
        prefix: API_
        keys: [TOKEN, URL]
"""


def test_requirements_and_variables_reach_the_replicas(
    serve_cluster: ServeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert importlib.util.find_spec("pyjokes") is None, "pyjokes is installed: this proves nothing"
    python_model(tmp_path / "models", "reporter", ENVIRONMENT_PREDICTOR)
    yaml_file = tmp_path / "reporter.yaml"
    yaml_file.write_text(YAML)
    (tmp_path / ".env").write_text("API_TOKEN=from-the-env-file\nAPI_URL=https://file\n")
    monkeypatch.setenv("API_URL", "https://environment")  # the environment wins over .env

    [md] = load_file(yaml_file)
    routing = routing_for(md, ModelStore(), LocalSecrets.load(yaml_file, None, os.environ))
    started = time.monotonic()
    serve_cluster.deploy([routing], timeout_s=INSTALL_TIMEOUT_S)
    print(f"deploy with {ENVIRONMENT_REQUIREMENT} took {time.monotonic() - started:.0f}s")

    names = ["GREETING", "API_TOKEN", "API_URL"]
    assert environment_report(serve_cluster.url, "reporter", names) == {
        "pyjokes": "0.8.3",
        "joke": True,
        "GREETING": "hello",
        "API_TOKEN": "from-the-env-file",
        "API_URL": "https://environment",
    }


def rayship_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`rayship serve ARGS` as a user runs it; these fail before Ray starts."""
    command = [sys.executable, "-P", "-m", "rayship.cli", "serve", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_variable_set_nowhere_stops_rayship_serve_naming_it(tmp_path: Path) -> None:
    python_model(tmp_path / "models", "reporter", ENVIRONMENT_PREDICTOR)
    yaml_file = tmp_path / "reporter.yaml"
    yaml_file.write_text(YAML)
    (tmp_path / ".env").write_text("API_URL=https://file\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("API_")}

    done = rayship_serve(str(yaml_file), env=env)

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "rayship: ModelDeployment 'reporter': spec.runtimeEnv.envFrom[0].secretRef 'api': "
        f"API_TOKEN is set neither in the environment nor in {tmp_path / '.env'}\n"
    )

    missing = tmp_path / "typo.env"
    done = rayship_serve(str(yaml_file), "--env-file", str(missing), env=env)

    assert (done.returncode, done.stderr) == (
        1,
        f"rayship: {missing}: cannot read the env file: No such file or directory\n",
    )
