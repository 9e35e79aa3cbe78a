"""`python -m rayship_operator`: run the operator with settings from the environment."""

from __future__ import annotations

import logging
import secrets

import kopf

from rayship_operator.handlers import TICK, build_registry
from rayship_operator.settings import OperatorSettings


class RoutineTicks(logging.Filter):
    """Drops kopf's "Timer 'tick' succeeded." line: the timer runs every few seconds per
    object, and its success says nothing; its failures, and everything it decides, are logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != f"Timer {TICK!r} succeeded."


def configure_logging(level: str) -> None:
    """One handler and one format for every line: kopf's (which also names the object)."""
    kopf.configure(log_format=kopf.LogFormat.FULL)
    logging.getLogger().setLevel(level)
    logging.getLogger("kopf.objects").addFilter(RoutineTicks())


def main() -> None:
    """Run kopf until stopped: watched namespaces and peering come from the settings."""
    settings = OperatorSettings.from_env()
    configure_logging(settings.log_level)
    kopf.run(
        registry=build_registry(settings),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        # kopf pauses every operator that sees a live peer of the same priority, so replicas
        # of one Deployment, started alike, would all pause: each draws its own, and the
        # highest is the active one.
        priority=secrets.randbelow(2**31),
        liveness_endpoint=settings.liveness_endpoint,
    )


if __name__ == "__main__":
    main()
