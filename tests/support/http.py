"""Plain HTTP calls for tests that need what a V2 client library hides: any status, headers,
hand-made bodies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_S = 120


def http_call(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (names lower-cased) and body of one request, whatever the status.

    `timeout` bounds each socket wait; fuzzing lowers it so a hung request fails fast.
    """
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), error.read()


def post_json(url: str, document: Any) -> tuple[int, Any]:
    """Status and JSON body of a JSON POST, whatever the status."""
    status, _, body = http_call(url, "POST", json.dumps(document).encode())
    return status, json.loads(body)


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}
