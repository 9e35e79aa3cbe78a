"""Bearer tokens without a cluster: where they come from, what travels, and the check.

The path through Serve (401s over HTTP, tritonclient's headers, a canary) is in
tests/ray/test_auth.py, and the operator reading a Secret in tests/e2e/test_operator.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rayship import manifest
from rayship.auth import parse_tokens, server_tokens, token_hash, token_hashes
from rayship.contract import VersionUserConfig, deployment_user_config
from rayship.credentials import auth_tokens
from rayship.errors import CredentialsError
from rayship.local import LocalSecrets
from rayship.serveconfig import LiveVersion, ModelRouting, compose
from rayship.spec import AuthSpec, SecretRef
from rayship_operator.settings import OperatorSettings
from rayship_predictors.auth import Unauthorized, check_bearer

TOKENS = ("s3cret-one", "s3cret-two")


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("abc", ("abc",)),
        ("abc def", ("abc", "def")),
        ("abc,def\n", ("abc", "def")),
        (" abc ,\n\tdef ,, ", ("abc", "def")),
        ("", ()),
    ],
)
def test_parse_tokens(value: str, tokens: tuple[str, ...]) -> None:
    assert parse_tokens(value) == tokens


def test_server_tokens_from_the_environment() -> None:
    assert server_tokens({"RAYSHIP_AUTH_TOKENS": "a,b"}) == ("a", "b")
    assert server_tokens({}) == ()
    settings = OperatorSettings.from_env({"RAYSHIP_AUTH_TOKENS": "tok-1 tok-2"})
    assert settings.server_tokens == ("tok-1", "tok-2")
    assert "tok-" not in repr(settings)


def md(spec_extra: dict[str, object]) -> manifest.ModelDeployment:
    return manifest.parse(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {"model": {"format": "onnx", "storageUri": "s3://m/iris"}, **spec_extra},
        }
    )


def test_only_hashes_reach_the_serve_config() -> None:
    routing = ModelRouting(
        md({"auth": {"secretRef": {"name": "tokens"}}}),
        (LiveVersion("1", "sha256:1"),),
        (("1", 100),),
        tokens=TOKENS,
    )

    config = compose([routing])

    written = json.dumps(config)
    assert not any(token in written for token in TOKENS)
    app = next(a for a in config["applications"] if a["name"] == "iris@1")
    hashes = VersionUserConfig.from_dict(deployment_user_config(app)).token_hashes
    assert hashes == token_hashes(TOKENS)
    assert "user_config" in app["deployments"][0]  # a lightweight update, never the args
    assert "tokenHashes" not in json.dumps(app["args"])


def test_the_crd_defaults_the_key() -> None:
    assert md({"auth": {"secretRef": {"name": "t"}}}).spec.auth == AuthSpec(SecretRef("t"))


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_tokens_from_the_secret() -> None:
    auth = AuthSpec(SecretRef("tokens"), key="tokens")
    assert auth_tokens("ns", auth, {"tokens": b64("one\ntwo")}) == ("one", "two")
    with pytest.raises(CredentialsError, match=r"Secret ns/tokens \(spec.auth.secretRef\) lacks"):
        auth_tokens("ns", auth, {"other": b64("x")})
    with pytest.raises(CredentialsError, match="tokens holds no token"):
        auth_tokens("ns", auth, {"tokens": b64(" ,\n")})


def test_local_mode_reads_the_key_and_the_server_tokens_from_the_environment(
    tmp_path: Path,
) -> None:
    deployment = md({"auth": {"secretRef": {"name": "t"}, "key": "IRIS_TOKENS"}})
    environ = {"IRIS_TOKENS": "m1 m2", "RAYSHIP_AUTH_TOKENS": "s1"}

    secrets = LocalSecrets.load(tmp_path / "m.yaml", None, environ)

    assert secrets.tokens(deployment) == ("s1", "m1", "m2")
    assert LocalSecrets.load(tmp_path / "m.yaml", None, {}).tokens(md({})) == ()
    with pytest.raises(CredentialsError, match="IRIS_TOKENS is set neither in the environment"):
        LocalSecrets.load(tmp_path / "m.yaml", None, {}).tokens(deployment)


ACCEPTED = frozenset(token_hashes(TOKENS))


@pytest.mark.parametrize(
    "header", ["Bearer s3cret-one", "bearer s3cret-two", "Bearer  s3cret-one "]
)
def test_a_valid_token_passes(header: str) -> None:
    check_bearer("iris", header, ACCEPTED)


def test_an_open_model_needs_no_token() -> None:
    check_bearer("iris", None, frozenset())


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (None, "model 'iris' needs a bearer token"),
        ("", "model 'iris' needs a bearer token"),
        ("Basic czNjcmV0LW9uZQ==", "model 'iris' needs a bearer token"),
        ("Bearer", "model 'iris' needs a bearer token"),
        ("Bearer s3cret-three", "the bearer token is not valid for model 'iris'"),
        (f"Bearer {token_hash('s3cret-one')}", "the bearer token is not valid"),
    ],
)
def test_anything_else_is_401_without_echoing_the_token(header: str | None, said: str) -> None:
    with pytest.raises(Unauthorized, match=said) as raised:
        check_bearer("iris", header, ACCEPTED)
    assert raised.value.status == 401
    assert dict(raised.value.headers)["WWW-Authenticate"].startswith("Bearer")
    assert "s3cret" not in raised.value.message
