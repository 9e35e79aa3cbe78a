"""Bearer tokens of the inference URLs: how a Secret's value becomes tokens, and tokens hashes.

The operator and local mode read tokens (a ModelDeployment's `spec.auth` Secret, and the
server-wide ones in `RAYSHIP_AUTH_TOKENS`) and hand the replicas only their SHA-256 hashes, in
the version's user_config: the Serve config, its dashboard and the replicas' memory never hold
a token, and rotating one is a lightweight update. The check itself is in
`rayship_predictors.auth`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

SERVER_TOKENS_ENV = "RAYSHIP_AUTH_TOKENS"
"""Tokens accepted by every model, for the operator (the chart's auth values) and local mode."""

_SEPARATORS = re.compile(r"[\s,]+")


def parse_tokens(value: str) -> tuple[str, ...]:
    """The tokens in a Secret value or variable: separated by whitespace or commas."""
    return tuple(token for token in _SEPARATORS.split(value) if token)


def server_tokens(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The server-wide tokens in `environ` (none when unset)."""
    return parse_tokens(environ.get(SERVER_TOKENS_ENV, ""))


def token_hash(token: str) -> str:
    """What a replica holds of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_hashes(tokens: Iterable[str]) -> tuple[str, ...]:
    """The hashes of `tokens`, sorted so equal sets compose equal configs."""
    return tuple(sorted({token_hash(token) for token in tokens}))
