"""The images' Dockerfiles, checked without a Docker engine (none runs on these machines).

What can be checked here is checked: the Ray pin agrees everywhere, the stages are laid out as
intended (multi-stage, non-root, nothing built in the final stage), the runtime requirements
track pyproject.toml, and the files the Dockerfiles COPY are enough to build the wheel.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from rayship_operator.settings import OperatorSettings
from rayship_predictors.settings import PredictorSettings

REPO = Path(__file__).resolve().parents[2]
PREDICTOR = REPO / "Dockerfile.predictor"
OPERATOR = REPO / "operator" / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "cmake", "clang", "apt-get", "apk add")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 else ""))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default.strip('"')
    return global_args, stages


def serving_requirements() -> list[str]:
    """What a predictor replica needs: the core dependencies plus the `serve` extra."""
    project = PYPROJECT["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["serve"]]


def ray_pin() -> str:
    for dependency in serving_requirements():
        requirement = Requirement(dependency)
        if requirement.name == "ray":
            (spec,) = requirement.specifier
            assert spec.operator == "=="
            return spec.version
    raise AssertionError("pyproject.toml pins no ray")


def test_ray_version_agrees_with_pyproject_and_the_chart() -> None:
    args, stages = parse(PREDICTOR)
    assert args["RAY_VERSION"] == ray_pin()
    assert stages[-1].base == "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}${RAY_VARIANT}"
    assert args["PYTHON_TAG"] == "py311"  # requires-python >=3.11, the wheels stage's Python
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert stages[0].base == "python:3.11-slim"
    values = yaml.safe_load((REPO / "helm/rayship/values.yaml").read_text())
    assert values["rayCluster"]["rayVersion"] == ray_pin()
    # and the image checks at build time that it holds that Ray
    assert "ray.__version__ == '${RAY_VERSION}'" in " ".join(stages[-1].args("RUN"))


def test_chart_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((REPO / "helm/rayship/Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]


def test_predictors_report_the_project_version() -> None:
    assert PredictorSettings().server_version == PYPROJECT["project"]["version"]


@pytest.mark.parametrize("path", [PREDICTOR, OPERATOR], ids=["predictor", "operator"])
def test_multi_stage_non_root_and_no_build_tools_in_the_final_stage(path: Path) -> None:
    _, stages = parse(path)
    assert len(stages) >= 2
    final = stages[-1]
    users = final.args("USER")
    assert users, "the final stage sets its user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric, so the kubelet can check runAsNonRoot"
    assert int(uid) != 0
    final_text = " ".join(rest for _, rest in final.instructions)
    for tool in BUILD_TOOLS:
        assert tool not in final_text, tool
    # the source tree never reaches the final stage: only what a build stage produced
    assert not final.args("COPY") or all("--from=" in c for c in final.args("COPY"))
    assert all(c.split()[0] != "." for c in final.args("COPY"))


def test_predictor_installs_our_wheel_without_deps_and_the_missing_runtime_deps() -> None:
    _, stages = parse(PREDICTOR)
    wheels, final = stages[0], stages[-1]
    build = " ".join(wheels.args("RUN"))
    assert "pip wheel --no-deps --wheel-dir /wheels/rayship ." in build
    install = " ".join(final.args("RUN"))
    assert "pip install --no-cache-dir --no-deps /wheels/rayship/*.whl" in install
    assert "--no-index" in install  # the final stage downloads and builds nothing
    listed = dict(re.findall(r'"(?:\$\{)?([A-Za-z_][A-Za-z0-9_.-]*)\}?([<>=!~][^"]*)"', build))
    listed["onnxruntime"] = listed.pop("ONNXRUNTIME")  # onnxruntime or onnxruntime-gpu
    needed = {
        Requirement(d).name: str(Requirement(d).specifier)
        for d in serving_requirements()
        if Requirement(d).name not in {"ray", "numpy"}  # the Ray image ships both
    }
    assert listed == needed
    assert 'ARG TORCH=""' in " ".join(f"ARG {a}" for a in wheels.args("ARG"))


def test_operator_image_runs_the_operator_entry_point() -> None:
    _, stages = parse(OPERATOR)
    build, final = stages[0], stages[-1]
    assert any('pip install ".[operator]"' in run for run in build.args("RUN"))
    assert final.args("ENTRYPOINT") == ['["python", "-m", "rayship_operator"]']
    assert final.args("COPY") == ["--from=build /opt/rayship /opt/rayship"]
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in final.args("ENV"))  # read-only root
    # the port the chart probes and the metrics port: the operator's defaults
    assert final.args("EXPOSE") == ["8080 9090"]
    assert OperatorSettings().liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert OperatorSettings().metrics_address == "0.0.0.0:9090"


def copied_sources(path: Path) -> list[str]:
    """The repository paths a Dockerfile's build stage COPYs from the context."""
    _, stages = parse(path)
    sources: list[str] = []
    for copy in stages[0].args("COPY"):
        parts = copy.split()
        sources += [p.rstrip("/") for p in parts[:-1] if not p.startswith("--")]
    return sources


@pytest.mark.parametrize("path", [PREDICTOR, OPERATOR], ids=["predictor", "operator"])
def test_dockerignore_lets_through_what_copy_needs(path: Path) -> None:
    ignore = Path(f"{path}.dockerignore").read_text().splitlines()
    assert "*" in ignore
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert set(copied_sources(path)) <= allowed


def test_the_copied_files_build_the_wheel(tmp_path: Path) -> None:
    """`pip wheel . --no-deps` on exactly what the Dockerfiles COPY: the wheel holds every module
    of the three packages, sub-packages included, their py.typed markers, and the CRD as a file
    (rayship/crd/ links to crds/)."""
    assert copied_sources(PREDICTOR) == copied_sources(OPERATOR)
    context = tmp_path / "context"
    context.mkdir()
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in copied_sources(PREDICTOR):
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, symlinks=True, ignore=ignored)
        else:
            shutil.copy2(origin, context / source)
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), "."],
        cwd=context, check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = out.glob("rayship-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package_dirs: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
    modules = {
        f"{package}/{path.relative_to(REPO / folder).as_posix()}"
        for package, folder in package_dirs.items()
        for path in (REPO / folder).rglob("*.py")
    }
    assert "rayship_predictors/runtimes/onnx.py" in modules
    assert modules - names == set()
    assert {f"{package}/py.typed" for package in package_dirs} <= names
    crd = zipfile.ZipFile(wheel).read("rayship/crd/modeldeployment.yaml")
    assert crd == (REPO / "crds/modeldeployment.yaml").read_bytes()
