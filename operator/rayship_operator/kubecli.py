"""`rayship status|history|rollback <name>`: the ModelDeployment for humans, beside kubectl.

Rollback patches `spec.model.version` to the previous good version, exactly what a GitOps user
would commit, so the operator treats it as any other version change (instant while warm).
"""

from __future__ import annotations

from typing import Any

from rayship_operator.handlers import GROUP, PLURAL, VERSION


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


def previous_good_version(status: dict[str, Any]) -> str | None:
    """The newest version that rolled out successfully and is not the active one."""
    active = status.get("activeVersion")
    for entry in status.get("history") or []:
        if entry.get("outcome") == "RolledOut" and entry.get("version") != active:
            return str(entry["version"])
    return None


def format_status(obj: dict[str, Any]) -> str:
    """What `rayship status` prints."""
    status = obj.get("status") or {}
    spec = obj["spec"]
    lines = [
        f"ModelDeployment {obj['metadata']['namespace']}/{obj['metadata']['name']}",
        f"  model:     {spec['model'].get('name') or obj['metadata']['name']}"
        f" ({spec['model']['format']}, {spec['model']['storageUri']})",
        f"  requested: {spec['model'].get('version', 'latest')}",
        f"  phase:     {status.get('phase', 'Pending')}",
        f"  active:    {status.get('activeVersion') or '-'}",
        f"  canary:    {status.get('canaryVersion') or '-'}",
        f"  rolling:   {status.get('rolloutTarget') or '-'}",
        f"  warm:      {', '.join(v['version'] for v in status.get('liveVersions') or []) or '-'}",
        f"  replicas:  {status.get('readyReplicas', 0)}",
        f"  url:       {status.get('url') or '-'}",
        "  conditions:",
    ]
    for condition in status.get("conditions") or []:
        message = f": {condition['message']}" if condition.get("message") else ""
        state = f"{condition['type']}={condition['status']}"
        lines.append(f"    {state} ({condition.get('reason', '')}){message}")
    return "\n".join(lines)


def format_history(obj: dict[str, Any]) -> str:
    """What `rayship history` prints: newest first."""
    rows = [("TIME", "VERSION", "OUTCOME", "REQUESTED", "MESSAGE")]
    for entry in (obj.get("status") or {}).get("history") or []:
        rows.append(
            (
                entry.get("time", ""),
                entry.get("version", ""),
                entry.get("outcome", ""),
                entry.get("requested", ""),
                entry.get("message", ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    )


class ModelDeployments:
    """Reads and patches ModelDeployments through the Kubernetes API (kubeconfig or in-cluster)."""

    def __init__(self) -> None:
        from kubernetes import client, config

        config.load_config()
        self._api = client.CustomObjectsApi()

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """One ModelDeployment, or CommandError naming it."""
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self._api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            raise CommandError(f"ModelDeployment {namespace}/{name}: {error.reason}") from None
        return obj

    def rollback(self, namespace: str, name: str, to: str | None) -> tuple[str, str]:
        """Patch spec.model.version to `to` or the previous good version; (old, new)."""
        obj = self.get(namespace, name)
        target = to or previous_good_version(obj.get("status") or {})
        if target is None:
            raise CommandError(
                f"ModelDeployment {namespace}/{name} has no earlier good version in its history"
            )
        current = obj["spec"]["model"].get("version", "latest")
        patch = {"spec": {"model": {"version": target}}}
        self._api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        return current, target
