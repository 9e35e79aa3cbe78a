"""The vocabulary of a ModelDeployment's status: phases, condition reasons, conditions, Events.

Shared by the rollout rules (`rayship.rollout`), local mode, and the operator's status decision.

Enums rather than bare strings, so a reason is written once and a misspelt one fails mypy. Each
is a `StrEnum`: it is written to the API as its plain value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """The one-word summary in `kubectl get md`, derived from the three conditions."""

    PENDING = "Pending"  # nothing serves yet, nothing failed
    PROGRESSING = "Progressing"  # something serves or is coming up, and something is moving
    READY = "Ready"  # a version serves, nothing moves, nothing failed
    DEGRADED = "Degraded"  # a version serves, but something failed
    FAILED = "Failed"  # nothing serves, and something failed


class Reason(StrEnum):
    """Condition and Event reasons, as users read them in `kubectl describe`."""

    # Ready
    SERVING = "Serving"
    NOT_SERVING = "NotServing"
    # Progressing
    ROLLING_OUT = "RollingOut"
    WAITING_FOR_RESOURCES = "WaitingForResources"
    STARTING_CANARY = "StartingCanary"
    APPLYING_TRAFFIC = "ApplyingTraffic"
    ROLLED_OUT = "RolledOut"
    NOTHING_ROLLED_OUT = "NothingRolledOut"
    # Degraded
    AS_EXPECTED = "AsExpected"
    ROLLED_BACK = "RolledBack"
    LOAD_FAILED = "LoadFailed"
    REPLICAS_UNHEALTHY = "ReplicasUnhealthy"
    CANARY_FAILED = "CanaryFailed"
    MODEL_NOT_FOUND = "ModelNotFound"
    STORAGE_ERROR = "StorageError"
    INVALID_SPEC = "InvalidSpec"
    CREDENTIALS_ERROR = "CredentialsError"
    CLUSTER_UNREACHABLE = "ClusterUnreachable"
    NAME_CONFLICT = "NameConflict"
    # Events only
    CANARY_STARTED = "CanaryStarted"
    RESTARTING_REPLICAS = "RestartingReplicas"
    APPLICATIONS_LEFT = "ApplicationsLeft"


class Kind(StrEnum):
    """The condition types every ModelDeployment carries."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition (the operator keeps its lastTransitionTime)."""

    type: Kind
    status: bool
    reason: Reason
    message: str


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post for a transition."""

    warning: bool
    reason: Reason
    message: str


@dataclass(frozen=True)
class Problem:
    """Something that failed and what a person should read about it (one line)."""

    reason: Reason
    message: str
