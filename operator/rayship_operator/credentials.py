"""Values from a ModelDeployment's Secrets, read with the operator's identity.

S3 credentials (`spec.storage.secretRef`) go to boto3 in the operator (to resolve versions) and
to the version replicas as the standard AWS_* variables; envFrom Secrets
(`spec.runtimeEnv.envFrom`) go to the replicas only; bearer tokens (`spec.auth`) go nowhere but
into the hashes the replicas check against (`rayship.auth`). None of them is ever logged, nor
written to status or events. The decoding and its errors are `rayship.credentials`', shared
with the CLI; this module only moves the blocking API calls off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kubernetes import client

from rayship import credentials
from rayship.spec import AuthSpec, EnvFromSource
from rayship.storage import Credentials


async def read_credentials(namespace: str, name: str) -> tuple[Credentials, dict[str, str]]:
    """Credentials for boto3 and the same as environment variables for the replicas."""
    core = client.CoreV1Api()
    return await asyncio.to_thread(credentials.read_secret_credentials, core, namespace, name)


async def read_env_from(namespace: str, sources: Sequence[EnvFromSource]) -> dict[str, str]:
    """The replicas' variables from envFrom's Secrets (no API call when there are none)."""
    if not sources:
        return {}
    core = client.CoreV1Api()
    return await asyncio.to_thread(credentials.read_env_from, core, namespace, sources)


async def read_auth_tokens(namespace: str, auth: AuthSpec | None) -> tuple[str, ...]:
    """`spec.auth`'s tokens (no API call, and none, when it is absent)."""
    if auth is None:
        return ()
    core = client.CoreV1Api()
    return await asyncio.to_thread(credentials.read_auth_tokens, core, namespace, auth)
