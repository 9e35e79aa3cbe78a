"""S3 credentials from a ModelDeployment's referenced Secret.

The values go to boto3 in the operator (to resolve versions) and to the version replicas as the
standard AWS_* variables; they are never logged, and never written to status or events.
"""

from __future__ import annotations

import asyncio
import base64

from rayship.storage import Credentials

SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class CredentialsError(RuntimeError):
    """The Secret is missing or lacks a key; the message names the Secret, never a value."""


def _read_secret(namespace: str, name: str) -> dict[str, str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        secret = client.CoreV1Api().read_namespaced_secret(name, namespace)
    except ApiException as error:
        raise CredentialsError(
            f"Secret {namespace}/{name} (spec.storage.secretRef) could not be read: {error.reason}"
        ) from None
    data = secret.data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


async def read_credentials(namespace: str, name: str) -> tuple[Credentials, dict[str, str]]:
    """Credentials for boto3 and the same as environment variables for the replicas."""
    values = await asyncio.to_thread(_read_secret, namespace, name)
    missing = [key for key in SECRET_KEYS[:2] if not values.get(key)]
    if missing:
        raise CredentialsError(f"Secret {namespace}/{name} lacks {', '.join(missing)}")
    environment = {key: values[key] for key in SECRET_KEYS if values.get(key)}
    credentials = Credentials(
        values["AWS_ACCESS_KEY_ID"],
        values["AWS_SECRET_ACCESS_KEY"],
        values.get("AWS_SESSION_TOKEN") or None,
    )
    return credentials, environment
