"""Where a model request goes: the traffic table of a model's live versions and shares.

Pure and Ray-free, so the rules are unit-tested directly; the path grammar lives in
`rayship.contract`, and the deployments in `app.py` own the handles that carry requests to the
versions picked here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from rayship.contract import ModelTable
from rayship_predictors.errors import NotFound, NotReady


@dataclass(frozen=True)
class TrafficTable:
    """One model's live versions (version -> Serve application) and traffic split."""

    model_name: str
    versions: Mapping[str, str]
    traffic: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, model_name: str, table: ModelTable) -> TrafficTable:
        """The table a model's `ModelTable` describes; versions without a share are dropped."""
        shares = tuple((version, percent) for version, percent in table.traffic if percent > 0)
        return cls(model_name, dict(table.versions), shares)

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
