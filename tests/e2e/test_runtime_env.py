"""spec.runtimeEnv through the operator: requirements installed from PyPI, variables from real
Secrets on the real API server, and what a user reads when either is wrong.

Secret values must reach the model and nothing a namespace reader sees: not the
ModelDeployment, not its Events, not the operator's log. They are in the Serve config on the
Ray cluster, which the README says.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest

from e2e.conftest import Stack
from e2e.test_operator import condition, events, infer, new_model, ready_on
from support.models import ENVIRONMENT_PREDICTOR, ENVIRONMENT_REQUIREMENT, environment_report

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.ray]

# Ray installs the requirement into a copy of the whole .venv (see tests/ray/test_runtime_env.py):
# minutes on a busy machine, so the readiness deadline and the waits allow for it.
INSTALL_S = 420


def secret(name: str, **values: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


def reporter(stack: Stack, name: str, runtime_env: dict[str, Any]) -> dict[str, Any]:
    """A python ModelDeployment serving `ENVIRONMENT_PREDICTOR` from S3, with `runtime_env`."""
    uri = f"s3://{stack.s3.new_bucket()}/{name}"
    stack.s3.upload_version(uri, "1", {"predictor.py": ENVIRONMENT_PREDICTOR.encode()})
    md = stack.model_deployment(name, uri, "1", runtimeEnv=runtime_env)
    md["spec"]["model"].update(format="python", python={"predictorClass": "predictor:Reporter"})
    md["spec"]["rollout"]["readinessDeadlineSeconds"] = INSTALL_S
    return md


def visible_in_the_namespace(stack: Stack, name: str) -> str:
    """Everything a namespace reader and the operator's log show about `name`."""
    return "\n".join(
        [
            stack.kubectl("get", "md", name, "-o", "yaml"),
            stack.kubectl("describe", "md", name),
            stack.kubectl("get", "events", "-o", "yaml"),
            stack.operator.log.read_text(errors="replace"),
        ]
    )


def test_secret_values_reach_the_model_and_no_status_event_or_log(stack: Stack) -> None:
    token = f"t0ken-{uuid.uuid4().hex}"
    stack.apply(secret("api", TOKEN=token, URL="https://api.example"))
    runtime_env = {
        "pip": [ENVIRONMENT_REQUIREMENT],
        "env": [{"name": "GREETING", "value": "hello"}],
        "envFrom": [{"secretRef": {"name": "api"}, "prefix": "API_"}],
    }
    stack.apply(reporter(stack, "reporter", runtime_env))
    stack.wait_for("reporter", ready_on("1"), timeout_s=INSTALL_S + 60)

    names = ["GREETING", "API_TOKEN", "API_URL"]
    assert environment_report(stack.serve.url, "reporter", names) == {
        "pyjokes": "0.8.3",
        "joke": True,
        "GREETING": "hello",
        "API_TOKEN": token,
        "API_URL": "https://api.example",
    }
    assert token not in visible_in_the_namespace(stack, "reporter")
    deployed = stack.serve.dashboard.applications()["reporter@1"]["deployed_app_config"]
    assert deployed["runtime_env"]["env_vars"]["API_TOKEN"] == token  # where the README says

    # A rotated value reaches new replicas at a reconcile: the operator re-reads the Secret.
    rotated = f"r0tated-{uuid.uuid4().hex}"
    stack.apply(secret("api", TOKEN=rotated, URL="https://api.example"))
    deadline = time.monotonic() + INSTALL_S
    seen = token
    while seen != rotated and time.monotonic() < deadline:
        time.sleep(1)
        seen = environment_report(stack.serve.url, "reporter", ["API_TOKEN"])["API_TOKEN"]
    assert seen == rotated
    assert rotated not in visible_in_the_namespace(stack, "reporter")


def test_a_missing_secret_or_key_is_named_and_the_version_keeps_serving(stack: Stack) -> None:
    uri = new_model(stack, "iris-env", ("1",))
    stack.apply(stack.model_deployment("iris-env", uri, "1"))
    stack.wait_for("iris-env", ready_on("1"))

    stack.patch("iris-env", {"runtimeEnv": {"envFrom": [{"secretRef": {"name": "absent"}}]}})
    status = stack.wait_for(
        "iris-env", lambda s: condition(s, "Degraded").get("reason") == "CredentialsError"
    )
    where = f"Secret {stack.namespace}/absent (spec.runtimeEnv.envFrom[0].secretRef)"
    assert condition(status, "Degraded")["message"] == (
        f'{where} could not be read: secrets "absent" not found'
    )
    assert condition(status, "Ready")["status"] == "True"
    assert infer(stack.serve, "iris-env")["model_version"] == "1"

    stack.apply(secret("absent", OTHER="unrelated"))
    keys = {"envFrom": [{"secretRef": {"name": "absent"}, "keys": ["TOKEN", "OTHER"]}]}
    stack.patch("iris-env", {"runtimeEnv": keys})
    status = stack.wait_for(
        "iris-env", lambda s: "lacks TOKEN" in condition(s, "Degraded").get("message", "")
    )
    assert condition(status, "Degraded")["message"] == f"{where} lacks TOKEN"
    assert infer(stack.serve, "iris-env")["model_version"] == "1"

    stack.apply(secret("absent", OTHER="unrelated", TOKEN="now-there"))
    status = stack.wait_for(
        "iris-env",
        lambda s: s.get("phase") == "Ready" and condition(s, "Degraded")["status"] == "False",
    )
    runtime_env = stack.serve.dashboard.applications()["iris-env@1"]["deployed_app_config"][
        "runtime_env"
    ]
    assert runtime_env["env_vars"]["TOKEN"] == "now-there"
    assert infer(stack.serve, "iris-env")["model_version"] == "1"


@pytest.mark.timeout(900)
def test_an_unknown_requirement_fails_the_version_saying_which(stack: Stack) -> None:
    uri = new_model(stack, "steady", ("1",))
    stack.apply(stack.model_deployment("steady", uri, "1"))
    stack.wait_for("steady", ready_on("1"))
    missing = f"rayship-no-such-package-{uuid.uuid4().hex[:8]}"

    stack.apply(reporter(stack, "unknown-req", {"pip": [missing]}))
    status = stack.wait_for(
        "unknown-req",
        lambda s: condition(s, "Degraded").get("reason") == "LoadFailed",
        timeout_s=INSTALL_S * 2,
    )

    message = condition(status, "Degraded")["message"]
    assert message.startswith("version 1 failed to load: ")
    assert missing in message
    assert "\n" not in message
    assert status["phase"] == "Failed"
    assert infer(stack.serve, "steady")["model_version"] == "1"  # the other model serves on
    warnings = [e["message"] for e in events(stack, "unknown-req") if e["type"] == "Warning"]
    assert message in warnings
