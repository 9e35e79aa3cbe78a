"""Read Serve's application details into the few facts Rayship acts on.

Local mode waits on these and the operator turns them into ModelDeployment status, so both
read the dashboard's JSON the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RUNNING = "RUNNING"
UNHEALTHY = "UNHEALTHY"  # replicas that ran failed (a health check, a crash, a lost node)
FAILED = {"DEPLOY_FAILED", UNHEALTHY}
# Replica states in which a replica answers requests: UPDATING is a running replica taking a
# new user_config (a traffic change), which must not count as an outage.
ANSWERING = {RUNNING, "UPDATING"}
SUMMARY_LIMIT = 400

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The last "package.module.SomeError: message" line of a traceback is the error itself.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): (.+)$")
# When pip cannot install a version's runtime_env, Ray's exception says only "Run cmd[9]
# failed"; pip's own last "ERROR:" line, quoted further down, names the requirement.
_RUNTIME_ENV_FAILED = "RuntimeEnvSetupError"
_PIP_ERROR = re.compile(r"^ERROR: (.+)$")
# Serve's message for replicas that cannot be placed names what each needs and what is free.
_UNSCHEDULABLE = re.compile(
    r"Resources required for each replica: (?P<need>\{[^}]*\})"
    r"(?:, total resources available: (?P<have>\{[^}]*\}))?"
)


def summarize(message: str) -> str:
    """One line a person can act on from Serve's message (which may hold a whole traceback
    with terminal colours): the error's own line, without Ray's wrapping, at most
    `SUMMARY_LIMIT` characters. The full text belongs in the operator's log."""
    lines = [line.strip() for line in _ANSI.sub("", message).splitlines() if line.strip()]
    if not lines:
        return ""
    chosen = lines[-1]
    pip_errors = [match.group(1) for line in lines if (match := _PIP_ERROR.match(line))]
    if pip_errors and _RUNTIME_ENV_FAILED in message:
        chosen = f"spec.runtimeEnv.pip could not be installed: {pip_errors[-1]}"
    else:
        for line in reversed(lines):
            match = _EXCEPTION_LINE.match(line)
            if match is not None:
                chosen = f"{match.group(1)}: {match.group(2)}"
                break
    return chosen if len(chosen) <= SUMMARY_LIMIT else chosen[: SUMMARY_LIMIT - 3] + "..."


def unschedulable(message: str) -> str | None:
    """What replicas that Ray cannot place need and what the cluster has, if Serve says so.

    Serve says it of any replica not started within 30 s; one that needs no resources at all
    (`{}`) waits for something else (a runtime environment, a busy node), which is no
    resource problem to report.
    """
    match = _UNSCHEDULABLE.search(_ANSI.sub("", message))
    if match is None or match.group("need") == "{}":
        return None
    need, have = match.group("need"), match.group("have")
    return f"each replica needs {need}" + (f", the cluster has {have} available" if have else "")


@dataclass(frozen=True)
class AppState:
    """One Serve application's status, its message, and its count of answering replicas."""

    status: str
    message: str
    running_replicas: int

    @property
    def running(self) -> bool:
        """Deployed as asked: every replica of the latest config runs."""
        return self.status == RUNNING

    @property
    def failed(self) -> bool:
        """Will not become ready without a change."""
        return self.status in FAILED

    @property
    def answering(self) -> bool:
        """Some replica answers requests: also while Serve applies an update, and after an
        update failed (Serve keeps the replicas of the last good configuration running)."""
        return self.running_replicas > 0

    @property
    def summary(self) -> str:
        """The message in one line (see `summarize`)."""
        return summarize(self.message)

    @property
    def unschedulable(self) -> str | None:
        """What its replicas wait for, when Ray cannot place them (see `unschedulable`)."""
        return unschedulable(self.message)


MISSING = AppState("NOT_STARTED", "", 0)


def app_states(applications: dict[str, Any]) -> dict[str, AppState]:
    """AppState per application name from `GET /api/serve/applications/`'s `applications`."""
    states = {}
    for name, details in applications.items():
        deployments = (details.get("deployments") or {}).values()
        messages = [details.get("message") or ""] + [d.get("message") or "" for d in deployments]
        replicas = sum(
            1
            for deployment in deployments
            for replica in deployment.get("replicas") or []
            if replica.get("state") in ANSWERING
        )
        states[name] = AppState(
            status=details.get("status", "NOT_STARTED"),
            message="\n".join(message for message in messages if message),
            running_replicas=replicas,
        )
    return states
