"""Values from the Secrets a ModelDeployment names: S3 credentials and runtime variables.

`spec.storage.secretRef` holds the S3 credentials: the operator reads it with its service
account to resolve versions (and hands the keys to the version replicas), and `rayship rollback
--to` reads it with the user's own Kubernetes credentials to check the version exists before
patching. `spec.runtimeEnv.envFrom` names Secrets whose keys become the replicas' environment
variables; only the operator reads those. Every reader goes through `read_secret` and
`decode_value`, so a Secret is refused with the same message wherever it is read: one that
names the Secret, the field that refers to it and the missing or undecodable keys, never a
value.

The kubernetes client is imported only inside `read_secret`, so the shared core keeps working
where it is not installed; callers pass the `CoreV1Api` they authenticated.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rayship.auth import parse_tokens
from rayship.errors import CredentialsError
from rayship.spec import AuthSpec, EnvFromSource
from rayship.storage import Credentials

SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""The keys read from the storage Secret; the first two are required, the token is optional."""

STORAGE_FIELD = "spec.storage.secretRef"

AUTH_FIELD = "spec.auth.secretRef"

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What the CRD admits as an environment variable name (`spec.runtimeEnv`)."""


def env_from_field(index: int) -> str:
    """The field that names the `index`th envFrom Secret, as errors quote it."""
    return f"spec.runtimeEnv.envFrom[{index}].secretRef"


def _where(namespace: str, name: str, field: str) -> str:
    return f"Secret {namespace}/{name} ({field})"


def decode_value(where: str, key: str, encoded: str) -> str:
    """One value of a Secret's `data` (base64, as the API returns it) as text."""
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsError(f"{where}: {key} is not base64-encoded UTF-8") from None


def decode_secret(
    namespace: str, name: str, data: Mapping[str, str] | None
) -> tuple[Credentials, dict[str, str]]:
    """Credentials for boto3, and the same as `AWS_*` environment variables for replicas.

    `data` is the storage Secret's base64-encoded `data` as the API returns it. Keys other than
    `SECRET_KEYS` are ignored, so an unrelated binary value in the same Secret is no error.
    """
    where = _where(namespace, name, STORAGE_FIELD)
    environment = {
        key: decode_value(where, key, encoded)
        for key in SECRET_KEYS
        if (encoded := (data or {}).get(key))
    }
    missing = [key for key in SECRET_KEYS[:2] if not environment.get(key)]
    if missing:
        raise CredentialsError(f"{where} lacks {', '.join(missing)}")
    credentials = Credentials(
        environment["AWS_ACCESS_KEY_ID"],
        environment["AWS_SECRET_ACCESS_KEY"],
        environment.get("AWS_SESSION_TOKEN"),
    )
    return credentials, environment


def secret_variables(
    namespace: str, source: EnvFromSource, field: str, data: Mapping[str, str] | None
) -> dict[str, str]:
    """An envFrom Secret's `data` as the variables it gives the replicas, `prefix` + key.

    Every listed key must be there. Without `keys`, every key is taken, and one that cannot
    name a variable is an error rather than skipped (as a kubelet would): a variable that
    silently goes missing would only show as a failure inside the model.
    """
    where = _where(namespace, source.secret_ref.name, field)
    data = data or {}
    missing = [key for key in source.keys if key not in data]
    if missing:
        raise CredentialsError(f"{where} lacks {', '.join(missing)}")
    variables = {}
    for key in source.keys or sorted(data):
        name = source.prefix + key
        if not ENV_NAME.fullmatch(name):
            raise CredentialsError(
                f"{where}: key {key!r} cannot name an environment variable ({name!r}); "
                "list the keys to take in keys"
            )
        variables[name] = decode_value(where, key, data[key])
    return variables


def read_secret(core: Any, namespace: str, name: str, field: str) -> Mapping[str, str]:
    """A Secret's base64-encoded `data`, read through `core` (a kubernetes `CoreV1Api`).

    A Secret that cannot be read (absent, or forbidden to whoever `core` authenticates as) is
    a `CredentialsError` carrying the API server's own explanation and the referring `field`.
    """
    from kubernetes.client.exceptions import ApiException

    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        where = _where(namespace, name, field)
        raise CredentialsError(f"{where} could not be read: {api_message(error)}") from None
    data: Mapping[str, str] = secret.data or {}
    return data


def read_secret_credentials(
    core: Any, namespace: str, name: str
) -> tuple[Credentials, dict[str, str]]:
    """Read the storage Secret through `core` and decode it (see `decode_secret`)."""
    return decode_secret(namespace, name, read_secret(core, namespace, name, STORAGE_FIELD))


def read_env_from(core: Any, namespace: str, sources: Sequence[EnvFromSource]) -> dict[str, str]:
    """The variables of every envFrom Secret, read through `core`; later sources win."""
    variables: dict[str, str] = {}
    for index, source in enumerate(sources):
        field = env_from_field(index)
        data = read_secret(core, namespace, source.secret_ref.name, field)
        variables.update(secret_variables(namespace, source, field, data))
    return variables


def auth_tokens(namespace: str, auth: AuthSpec, data: Mapping[str, str] | None) -> tuple[str, ...]:
    """The tokens in `spec.auth`'s Secret: its `key`, which must hold at least one."""
    where = _where(namespace, auth.secret_ref.name, AUTH_FIELD)
    encoded = (data or {}).get(auth.key)
    if encoded is None:
        raise CredentialsError(f"{where} lacks {auth.key}")
    tokens = parse_tokens(decode_value(where, auth.key, encoded))
    if not tokens:
        raise CredentialsError(f"{where}: {auth.key} holds no token")
    return tokens


def read_auth_tokens(core: Any, namespace: str, auth: AuthSpec) -> tuple[str, ...]:
    """Read `spec.auth`'s Secret through `core` and take its tokens (see `auth_tokens`)."""
    data = read_secret(core, namespace, auth.secret_ref.name, AUTH_FIELD)
    return auth_tokens(namespace, auth, data)


def api_message(error: Any) -> str:
    """The API server's message in a kubernetes `ApiException` (its Status body), else its reason.

    The reason alone ("Forbidden") hides what was refused and to whom; the Status message says
    both (`secrets "s3" is forbidden: User "ann" cannot get resource "secrets" ...`).
    """
    try:
        message = json.loads(error.body or "")["message"]
    except (ValueError, TypeError, KeyError):
        return str(error.reason)
    return str(message)
