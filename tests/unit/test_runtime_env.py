"""Where spec.runtimeEnv.envFrom's values come from: a Secret's data on a cluster, the
environment and an env file in local mode. Errors name the Secret, field and key, never a value.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from rayship import manifest
from rayship.credentials import secret_variables
from rayship.errors import CredentialsError, InvalidSpec
from rayship.local import LocalSecrets, read_env_file
from rayship.spec import EnvFromSource, SecretRef
from rayship.status import summarize


def encoded(**values: str) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}


FIELD = "spec.runtimeEnv.envFrom[0].secretRef"


def test_every_key_of_the_secret_with_its_prefix() -> None:
    source = EnvFromSource(SecretRef("api"), prefix="API_")
    data = encoded(TOKEN="t0ken", URL="https://x")
    assert secret_variables("ml", source, FIELD, data) == {
        "API_TOKEN": "t0ken",
        "API_URL": "https://x",
    }


def test_listed_keys_only_and_each_required() -> None:
    data = encoded(TOKEN="t0ken", OTHER="not for the model")
    source = EnvFromSource(SecretRef("api"), keys=("TOKEN",))
    assert secret_variables("ml", source, FIELD, data) == {"TOKEN": "t0ken"}

    missing = EnvFromSource(SecretRef("api"), keys=("TOKEN", "URL", "USER"))
    with pytest.raises(CredentialsError) as raised:
        secret_variables("ml", missing, FIELD, data)
    assert str(raised.value) == f"Secret ml/api ({FIELD}) lacks URL, USER"


def test_a_key_that_cannot_name_a_variable_is_refused_naming_it() -> None:
    data = encoded(**{"tls.crt": "-----BEGIN", "TOKEN": "t0ken"})
    with pytest.raises(CredentialsError) as raised:
        secret_variables("ml", EnvFromSource(SecretRef("tls")), FIELD, data)
    assert str(raised.value) == (
        f"Secret ml/tls ({FIELD}): key 'tls.crt' cannot name an environment variable "
        "('tls.crt'); list the keys to take in keys"
    )


def test_undecodable_values_are_named_not_shown() -> None:
    with pytest.raises(CredentialsError) as raised:
        secret_variables("ml", EnvFromSource(SecretRef("api")), FIELD, {"TOKEN": "%%%"})
    assert str(raised.value) == f"Secret ml/api ({FIELD}): TOKEN is not base64-encoded UTF-8"
    binary = {"TOKEN": base64.b64encode(b"\xff\xfe").decode()}
    with pytest.raises(CredentialsError, match="TOKEN is not base64-encoded UTF-8"):
        secret_variables("ml", EnvFromSource(SecretRef("api")), FIELD, binary)


def test_env_file_forms(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=yes\n"
        "SPACED = spaced out  \n"
        "COMMENTED=abc # not part of it\n"
        "HASH=a#b\n"
        "DOUBLE=\"with # and 'quotes'\"\n"
        "SINGLE='literal \\n' # comment\n"
        "EMPTY=\n"
    )
    assert read_env_file(path) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "spaced out",
        "COMMENTED": "abc",
        "HASH": "a#b",
        "DOUBLE": "with # and 'quotes'",
        "SINGLE": "literal \\n",
        "EMPTY": "",
    }


def test_env_file_errors_name_the_line_not_its_content(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OK=1\nthis-is-s3cr3t\n")
    with pytest.raises(CredentialsError) as raised:
        read_env_file(path)
    assert str(raised.value) == f"{path}:2: not a NAME=value line"
    with pytest.raises(CredentialsError, match=r"absent\.env: cannot read the env file"):
        read_env_file(tmp_path / "absent.env")


def deployment(env_from: list[dict[str, Any]]) -> manifest.ModelDeployment:
    return manifest.parse(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "jokes"},
            "spec": {
                "model": {"format": "onnx", "storageUri": "s3://m/jokes"},
                "runtimeEnv": {"envFrom": env_from},
            },
        }
    )


def test_locally_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TOKEN=from-file\nURL=https://file\n")
    secrets = LocalSecrets.load(tmp_path / "m.yaml", None, {"TOKEN": "from-env", "PATH": "/bin"})
    md = deployment([{"secretRef": {"name": "api"}, "keys": ["TOKEN", "URL"]}])
    assert secrets.env_from(md) == {"TOKEN": "from-env", "URL": "https://file"}


def test_locally_variables_are_looked_up_by_the_name_the_replicas_see(tmp_path: Path) -> None:
    environ = {"A_TOKEN": "a", "B_TOKEN": "b", "TOKEN": "neither"}
    secrets = LocalSecrets.load(tmp_path / "m.yaml", None, environ)
    md = deployment(
        [
            {"secretRef": {"name": "a"}, "prefix": "A_", "keys": ["TOKEN"]},
            {"secretRef": {"name": "b"}, "prefix": "B_", "keys": ["TOKEN"]},
        ]
    )
    assert secrets.env_from(md) == {"A_TOKEN": "a", "B_TOKEN": "b"}


def test_locally_a_missing_variable_is_named_in_one_line(tmp_path: Path) -> None:
    env_file = tmp_path / "elsewhere.env"
    env_file.write_text("URL=https://file\n")
    secrets = LocalSecrets.load(tmp_path / "m.yaml", env_file, {})
    md = deployment([{"secretRef": {"name": "api"}, "keys": ["URL", "TOKEN"]}])
    with pytest.raises(CredentialsError) as raised:
        secrets.env_from(md)
    assert str(raised.value) == (
        f"ModelDeployment 'jokes': {FIELD} 'api': TOKEN is set neither in the environment "
        f"nor in {env_file}"
    )


def test_locally_an_explicit_env_file_must_exist_and_the_default_may_not(tmp_path: Path) -> None:
    assert LocalSecrets.load(tmp_path / "m.yaml", None, {}).variables == {}
    with pytest.raises(CredentialsError, match="cannot read the env file"):
        LocalSecrets.load(tmp_path / "m.yaml", tmp_path / "typo.env", {})


def test_locally_env_from_needs_the_keys_names(tmp_path: Path) -> None:
    secrets = LocalSecrets.load(tmp_path / "m.yaml", None, {"TOKEN": "t"})
    with pytest.raises(InvalidSpec) as raised:
        secrets.env_from(deployment([{"secretRef": {"name": "api"}}]))
    assert str(raised.value) == (
        f"ModelDeployment 'jokes': {FIELD} 'api' lists no keys: rayship serve takes Secret "
        "values from the environment and needs the keys' names"
    )


# What Serve reported for an application whose pip requirement does not exist (Ray 2.60,
# tests/e2e/test_runtime_env.py's case; long lines and most frames cut).
PIP_FAILURE = """Runtime env setup for app 'bad@1' failed:
Traceback (most recent call last):
  File ".../ray/serve/_private/application_state.py", line 926, in _reconcile_build_app_task
    raise value
ray.exceptions.RuntimeEnvSetupError: Failed to set up runtime environment.
[Node 192.0.2.2] Traceback (most recent call last):
  File ".../ray/_private/runtime_env/utils.py", line 105, in check_output_cmd
    raise SubprocessCalledProcessError(
ray._private.runtime_env.utils.SubprocessCalledProcessError: Run cmd[9] failed with the \
following details.
Command '['.../virtualenv/bin/python', '-m', 'pip', 'install', '-r', '.../requirements.txt']'
Last 50 lines of stdout:
    Looking in links: /opt/wheels
    ERROR: Could not find a version that satisfies the requirement nosuch (from versions: none)
    ERROR: No matching distribution found for nosuch

"""


def test_a_requirement_pip_cannot_install_is_summarized_by_pips_own_words() -> None:
    assert summarize(PIP_FAILURE) == (
        "spec.runtimeEnv.pip could not be installed: No matching distribution found for nosuch"
    )
    # pip's words only where pip ran for a runtime env: a model's own "ERROR:" output is not it
    model_error = "ERROR: something the model printed\nValueError: bad weights"
    assert summarize(model_error) == "ValueError: bad weights"
