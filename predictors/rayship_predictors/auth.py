"""The bearer-token check of a model's URLs, against the token hashes in its user_config.

The presented token is hashed and compared with every accepted hash by `hmac.compare_digest`,
all of them whatever matches, so neither the token's content nor which hash it matches shows
in the time the check takes. Tokens are never logged: the error messages name the model only.
"""

from __future__ import annotations

import hashlib
import hmac

from rayship_predictors.errors import InferenceError

CHALLENGE = (("WWW-Authenticate", 'Bearer realm="rayship"'),)
OPEN_PATHS = frozenset({"/ready"})
"""Paths below a model URL that answer without a token: readiness, for probes and balancers."""


class Unauthorized(InferenceError):
    """No valid bearer token (401), with the challenge RFC 6750 asks for."""

    status = 401


def check_bearer(model_name: str, authorization: str | None, accepted: frozenset[str]) -> None:
    """Pass when `accepted` is empty (an open model) or the header's token hashes into it."""
    if not accepted:
        return
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            f"model {model_name!r} needs a bearer token (Authorization: Bearer <token>)",
            CHALLENGE,
        )
    presented = hashlib.sha256(token.strip().encode()).hexdigest()
    matched = False
    for expected in accepted:
        matched |= hmac.compare_digest(presented, expected)
    if not matched:
        raise Unauthorized(f"the bearer token is not valid for model {model_name!r}", CHALLENGE)
