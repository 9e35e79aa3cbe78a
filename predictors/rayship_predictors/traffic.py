"""Where a model request goes: path rules and the traffic table of live versions and shares.

Pure and Ray-free, so the rules are unit-tested directly; the deployments in `app.py` own the
handles that carry requests to the versions picked here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rayship_predictors.errors import NotFound, NotReady

VERSIONS = "/versions/"


def below_model(model_name: str, path: str) -> str:
    """The path below `/v2/models/<m>`: a version reached with no route prefix (see
    `rayship.serveconfig`) sees the whole URL path; one routed at the model URL, the rest."""
    prefix = f"/v2/models/{model_name}"
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return path


def split_version(path: str) -> tuple[str | None, str]:
    """`/versions/<v>/infer` -> (v, `/infer`); a path naming no version -> (None, path)."""
    if not path.startswith(VERSIONS):
        return None, path
    version, slash, rest = path[len(VERSIONS) :].partition("/")
    return version, slash + rest


@dataclass(frozen=True)
class TrafficTable:
    """One model's live versions (version -> Serve application) and traffic split."""

    model_name: str
    versions: Mapping[str, str]
    traffic: tuple[tuple[str, int], ...]

    @classmethod
    def from_config(cls, model_name: str, config: Mapping[str, Any]) -> TrafficTable:
        """Read `serveconfig.model_table`'s output; versions without a share are dropped."""
        shares = tuple(
            (str(version), int(percent))
            for version, percent in config.get("traffic", [])
            if int(percent) > 0
        )
        return cls(model_name, dict(config.get("versions", {})), shares)

    def app_of(self, version: str) -> str:
        """The application serving a live version; 404 for any other version."""
        app = self.versions.get(version)
        if app is None:
            raise NotFound(f"model {self.model_name!r} has no live version {version!r}")
        return app

    def primary(self) -> str:
        """The version with the largest share: it answers metadata and readiness."""
        self._require_traffic()
        return max(self.traffic, key=lambda pair: pair[1])[0]

    def pick(self) -> str:
        """A version drawn by the traffic split."""
        self._require_traffic()
        if len(self.traffic) == 1:
            return self.traffic[0][0]
        names = [version for version, _ in self.traffic]
        weights = [percent for _, percent in self.traffic]
        return random.choices(names, weights)[0]

    def _require_traffic(self) -> None:
        if not self.traffic:
            raise NotReady(f"model {self.model_name!r} is not ready yet")
