"""`rayship status|history|rollback NAME`: a ModelDeployment for humans, beside kubectl.

Rollback patches `spec.model.version`, exactly what a GitOps user would commit, so the operator
treats it as any other version change (instant while the version is still warm). A version that
is not warm is first looked up in the model's storage, so a mistyped version is refused here,
naming its URI, instead of turning into a `RolledBack` condition after the patch.

This module belongs to the shared core rather than the operator so that the commands need only
`pip install 'rayship[kube]'` (no kopf). The kubernetes client is imported when a command
connects, not on import, and its absence is a one-line `MissingDependency` naming that extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rayship.contract import CRD_VERSION, GROUP, PLURAL
from rayship.credentials import api_message, read_secret_credentials
from rayship.errors import MissingDependency, RayshipError
from rayship.spec import spec_from_dict
from rayship.storage import Credentials, ModelStore, StorageError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where a pod finds its service account token, CA and namespace (in-cluster credentials)."""

DEFAULT_KUBECONFIG = "~/.kube/config"
DEFAULT_NAMESPACE = "default"


class CommandError(RayshipError):
    """A command cannot do what was asked; the message says why."""


def _kubernetes() -> Any:
    """The kubernetes client package, or `MissingDependency` naming the extra that installs it.

    Only a missing `kubernetes` itself is translated: a broken install inside it keeps its
    traceback, which is what its fixer needs.
    """
    try:
        import kubernetes
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "kubernetes":
            raise
        raise MissingDependency(
            "the status, history and rollback commands need the Kubernetes client: "
            "pip install 'rayship[kube]'"
        ) from None
    return kubernetes


@dataclass(frozen=True)
class Cluster:
    """Where the commands go: an authenticated API client and the namespace to default to."""

    api: Any
    namespace: str


def kubeconfig_paths(environ: Mapping[str, str]) -> list[Path]:
    """The kubeconfig files kubectl would read: `$KUBECONFIG`'s list, else `~/.kube/config`."""
    listed = environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    return [Path(path).expanduser() for path in listed.split(os.pathsep) if path]


def connect(
    environ: Mapping[str, str] = os.environ, service_account: Path = SERVICE_ACCOUNT
) -> Cluster:
    """Credentials from the kubeconfig when one exists, else the pod's service account.

    The namespace is the kubeconfig's current context's, or the pod's own, else `default`:
    what kubectl would use, so `rayship status NAME` finds what `kubectl get md NAME` finds.
    """
    kubernetes = _kubernetes()
    existing = [path for path in kubeconfig_paths(environ) if path.exists()]
    if existing:
        files = os.pathsep.join(str(path) for path in existing)
        try:
            _, context = kubernetes.config.list_kube_config_contexts(config_file=files)
            api = kubernetes.config.new_client_from_config(config_file=files)
        except (kubernetes.config.ConfigException, yaml.YAMLError) as error:
            raise CommandError(f"kubeconfig {files}: {' '.join(str(error).split())}") from None
        namespace = (context.get("context") or {}).get("namespace")
        return Cluster(api, namespace or DEFAULT_NAMESPACE)
    if environ.get("KUBERNETES_SERVICE_HOST") and (service_account / "token").exists():
        configuration = kubernetes.client.Configuration()
        loader = kubernetes.config.incluster_config.InClusterConfigLoader(
            token_filename=str(service_account / "token"),
            cert_filename=str(service_account / "ca.crt"),
            environ=environ,
        )
        try:
            loader.load_and_set(configuration)
        except kubernetes.config.ConfigException as error:
            raise CommandError(f"in-cluster credentials ({service_account}): {error}") from None
        namespace_file = service_account / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else ""
        return Cluster(kubernetes.client.ApiClient(configuration), namespace or DEFAULT_NAMESPACE)
    looked = ", ".join(str(path) for path in kubeconfig_paths(environ))
    raise CommandError(
        f"no Kubernetes credentials: no kubeconfig at {looked} and not running in a pod; "
        f"set KUBECONFIG or write {DEFAULT_KUBECONFIG}"
    )


def previous_good_version(status: Mapping[str, Any]) -> str | None:
    """The newest version that rolled out successfully and is not the active one."""
    active = status.get("activeVersion")
    for entry in status.get("history") or []:
        if entry.get("outcome") == "RolledOut" and entry.get("version") != active:
            return str(entry["version"])
    return None


def live_versions(status: Mapping[str, Any]) -> set[str]:
    """The versions running on the Ray cluster now (the active, a canary, the warm previous)."""
    return {str(live["version"]) for live in status.get("liveVersions") or []}


def one_line(message: Any) -> str:
    """A message's first line, with ` …` when more lines follow: one table row per entry.

    Messages come from predictors' exceptions and storage errors, which may span lines (a
    stack of causes); the full text stays in the object's status (`kubectl get md -o yaml`).
    """
    lines = str(message or "").strip().splitlines() or [""]
    return lines[0].rstrip() + (" …" if len(lines) > 1 else "")


def format_status(obj: Mapping[str, Any]) -> str:
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
        message = f": {one_line(condition['message'])}" if condition.get("message") else ""
        state = f"{condition['type']}={condition['status']}"
        lines.append(f"    {state} ({condition.get('reason', '')}){message}")
    return "\n".join(lines)


def format_history(obj: Mapping[str, Any]) -> str:
    """What `rayship history` prints: newest first, one line per rollout."""
    rows = [["TIME", "VERSION", "OUTCOME", "REQUESTED", "MESSAGE"]]
    for entry in (obj.get("status") or {}).get("history") or []:
        cells = [str(entry.get(key) or "") for key in ("time", "version", "outcome", "requested")]
        rows.append([*cells, one_line(entry.get("message"))])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    )


@contextmanager
def _api_call(what: str) -> Iterator[None]:
    """Turn the API server's refusals and an unreachable server into one-line CommandErrors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as error:
        raise CommandError(f"{what}: {api_message(error)}") from None
    except HTTPError as error:
        raise CommandError(f"{what}: the Kubernetes API cannot be reached: {error}") from None


class ModelDeployments:
    """Reads and patches ModelDeployments through one authenticated API client."""

    def __init__(self, api: Any) -> None:
        kubernetes = _kubernetes()
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self._core = kubernetes.client.CoreV1Api(api)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """One ModelDeployment, or CommandError naming it."""
        with _api_call(f"ModelDeployment {namespace}/{name}"):
            obj: dict[str, Any] = self._objects.get_namespaced_custom_object(
                GROUP, CRD_VERSION, namespace, PLURAL, name
            )
        return obj

    def rollback(self, namespace: str, name: str, to: str | None) -> tuple[str, str]:
        """Patch spec.model.version to `to` or the previous good version; (old, new).

        A target that is not live is looked up in storage first; a missing one is a
        CommandError naming its URI, and nothing is patched.
        """
        obj = self.get(namespace, name)
        status = obj.get("status") or {}
        current = str(obj["spec"]["model"].get("version", "latest"))
        target = to or previous_good_version(status)
        if target is None:
            raise CommandError(
                f"ModelDeployment {namespace}/{name} has no earlier good version in its history"
            )
        if target not in live_versions(status):
            try:
                self._check_stored(namespace, obj, target)
            except StorageError as error:
                raise CommandError(f"{error}; spec.model.version left at {current}") from None
        patch = {"spec": {"model": {"version": target}}}
        with _api_call(f"ModelDeployment {namespace}/{name}"):
            self._objects.patch_namespaced_custom_object(
                GROUP, CRD_VERSION, namespace, PLURAL, name, patch
            )
        return current, target

    def _check_stored(self, namespace: str, obj: Mapping[str, Any], version: str) -> None:
        """Resolve `version` in the model's storage as the operator would, or StorageError.

        The Secret is read with the user's credentials: whoever may roll a model back to an
        unknown version should be able to read what the operator reads for it. Without a
        secretRef, boto3's standard chain applies, as on the operator's side.
        """
        spec = spec_from_dict(obj["spec"])
        credentials: Credentials | None = None
        if spec.storage.secret_ref is not None:
            credentials, _ = read_secret_credentials(
                self._core, namespace, spec.storage.secret_ref.name
            )
        ModelStore(spec.storage, credentials=credentials).resolve(spec.model.storage_uri, version)
