"""`rayship status|history|rollback` without a cluster: where the commands connect, which
namespace they default to, what they print, and the one-line errors when they cannot run.

The commands against a real API server, S3 and the operator are in `tests/e2e/test_operator.py`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from rayship import kubecli
from rayship.credentials import api_message, decode_secret
from rayship.errors import CredentialsError

SERVER = "https://203.0.113.7:6443"  # TEST-NET-3: never dialled, only recorded


def write_kubeconfig(path: Path, namespace: str | None) -> Path:
    """A kubeconfig with one token user whose current context has `namespace` (or none)."""
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": SERVER}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [
            {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "nope"}},
            {"name": "mine", "context": context},
        ],
        "current-context": "mine",
    }
    path.write_text(json.dumps(config))
    return path


def test_the_namespace_is_the_current_contexts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", "team-a")))
    cluster = kubecli.connect()
    assert cluster.namespace == "team-a"
    assert cluster.api.configuration.host == SERVER


def test_a_context_without_a_namespace_means_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", None)))
    assert kubecli.connect().namespace == "default"


def test_missing_files_in_a_kubeconfig_list_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    present = write_kubeconfig(tmp_path / "config", "team-b")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "absent"), str(present)]))
    assert kubecli.connect().namespace == "team-b"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(json.dumps({"apiVersion": "v1", "kind": "Config"}), id="no-context"),
        pytest.param("clusters: [\n  - {name: c\n", id="not-yaml"),
    ],
)
def test_a_broken_kubeconfig_is_one_line_naming_the_file(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "config"
    broken.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(broken))
    with pytest.raises(kubecli.CommandError, match=f"^kubeconfig {broken}: ") as raised:
        kubecli.connect()
    assert "\n" not in str(raised.value)


def test_in_a_pod_the_namespace_is_the_pods_own(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("not parsed until a request is made")
    (account / "namespace").write_text("ml-serving\n")
    environ = {
        "KUBECONFIG": str(tmp_path / "absent"),
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
    }
    cluster = kubecli.connect(environ, service_account=account)
    assert cluster.namespace == "ml-serving"
    assert cluster.api.configuration.host == "https://10.96.0.1:443"


def md(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"model": {"format": "onnx", "storageUri": "s3://b/iris", "version": "2"}},
        "status": status,
    }


def test_history_shows_one_aligned_line_per_rollout() -> None:
    trace = "load failed: bad graph\nTraceback (most recent call last):\n  File x"
    history = [
        {"time": "2025-01-02T03:04:05Z", "version": "10", "outcome": "RolledBack",
         "requested": "latest", "message": trace},
        {"time": "2025-01-01T00:00:00Z", "version": "2", "outcome": "RolledOut",
         "requested": "2", "message": ""},
    ]  # fmt: skip
    lines = kubecli.format_history(md({"history": history})).splitlines()
    assert len(lines) == 3
    assert lines[1].endswith("  load failed: bad graph …")
    assert lines[2].split() == ["2025-01-01T00:00:00Z", "2", "RolledOut", "2"]
    assert lines[0].index("OUTCOME") == lines[1].index("RolledBack") == lines[2].index("RolledOut")
    assert lines[0].index("MESSAGE") == lines[1].index("load failed")


def test_status_shows_conditions_on_one_line_each() -> None:
    status = {
        "phase": "Degraded",
        "activeVersion": "2",
        "liveVersions": [{"version": "2"}, {"version": "1"}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "version 2"},
            {"type": "Degraded", "status": "True", "reason": "RolledBack", "message": "a\nb"},
        ],
    }
    printed = kubecli.format_status(md(status))
    assert "  warm:      2, 1\n" in printed
    assert printed.endswith(
        "    Ready=True (Serving): version 2\n    Degraded=True (RolledBack): a …"
    )


def test_previous_good_version_skips_the_active_and_failed_ones() -> None:
    history = [
        {"version": "3", "outcome": "RolledOut"},
        {"version": "4", "outcome": "RolledBack"},
        {"version": "2", "outcome": "RolledOut"},
    ]
    assert kubecli.previous_good_version({"activeVersion": "3", "history": history}) == "2"
    assert kubecli.previous_good_version({"activeVersion": "3", "history": history[:2]}) is None


def run_cli(*args: str, env: dict[str, str], block: tuple[str, ...] = ()) -> tuple[int, str]:
    """`rayship ARGS` in a fresh interpreter, with the packages in `block` made unimportable.

    A fresh process because what is checked is the import chain itself: in this process the
    kubernetes client and kopf are already loaded, so nothing here could show that the CLI
    imports neither. A `None` in `sys.modules` makes `import` raise ModuleNotFoundError exactly
    as for a package that is not installed.
    """
    code = (
        "import sys\n"
        f"for name in {block!r}: sys.modules[name] = None\n"
        "from rayship.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout + done.stderr


def test_without_the_kubernetes_client_the_commands_name_the_extra(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(write_kubeconfig(tmp_path / "config", "a"))}
    for command in ("status", "history", "rollback"):
        code, printed = run_cli(command, "iris", env=env, block=("kubernetes", "kopf"))
        assert code == 1
        assert printed == (
            "rayship: the status, history and rollback commands need the Kubernetes client: "
            "pip install 'rayship[kube]'\n"
        )


def test_without_credentials_the_commands_say_where_they_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(tmp_path / "missing"), HOME=str(tmp_path))
    code, printed = run_cli("status", "iris", env=env)
    assert code == 1
    assert printed == (
        f"rayship: no Kubernetes credentials: no kubeconfig at {tmp_path / 'missing'} and not "
        "running in a pod; set KUBECONFIG or write ~/.kube/config\n"
    )


def encoded(**values: str) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}


def test_secret_decoding_returns_credentials_and_the_replicas_environment() -> None:
    data = encoded(AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY="s3cr3t", OTHER="ignored")
    credentials, environment = decode_secret("ml", "s3", data)
    assert (credentials.access_key_id, credentials.secret_access_key) == ("AKID", "s3cr3t")
    assert credentials.session_token is None
    assert environment == {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}


def test_a_secret_without_the_keys_names_them_and_no_value() -> None:
    with pytest.raises(CredentialsError) as raised:
        decode_secret("ml", "s3", encoded(AWS_ACCESS_KEY_ID="AKID-VALUE"))
    assert str(raised.value) == (
        "Secret ml/s3 (spec.storage.secretRef) lacks AWS_SECRET_ACCESS_KEY"
    )
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID is not base64-encoded UTF-8"):
        decode_secret(
            "ml", "s3", {"AWS_ACCESS_KEY_ID": "%%%", **encoded(AWS_SECRET_ACCESS_KEY="x")}
        )


def test_api_refusals_carry_the_servers_message() -> None:
    refused = ApiException(status=403, reason="Forbidden")
    assert api_message(refused) == "Forbidden"
    refused.body = json.dumps({"kind": "Status", "message": 'secrets "s3" is forbidden'})
    assert api_message(refused) == 'secrets "s3" is forbidden'
