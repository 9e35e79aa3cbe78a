"""`python -m rayship_operator`: run the operator with settings from the environment."""

from __future__ import annotations

import logging
import os

import kopf

from rayship_operator.handlers import build_registry
from rayship_operator.settings import OperatorSettings


def main() -> None:
    """Run kopf until stopped: watched namespaces and peering come from the settings."""
    logging.basicConfig(
        level=os.environ.get("RAYSHIP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = OperatorSettings.from_env()
    kopf.configure(verbose=False)
    kopf.run(
        registry=build_registry(settings),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        liveness_endpoint=settings.liveness_endpoint,
    )


if __name__ == "__main__":
    main()
