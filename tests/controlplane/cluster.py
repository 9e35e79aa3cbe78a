"""A real Kubernetes control plane for tests: etcd and kube-apiserver on loopback.

Started the way controller-runtime's envtest starts one: no kubelet, scheduler or
controller-manager, so pods never run, nothing is garbage-collected and a deleted
namespace stays Terminating. What it does have is the real API server: RBAC,
client-certificate and service-account-token authentication, admission, CRDs with
structural schemas, CEL validation, the status subresource, watches and OpenAPI.

Binaries come from ``build.sh`` beside this file (built from the Go module proxy at
the versions pinned in ``versions.env``, cached under ``~/.cache/rayship/bin``).

Standard library only (plus the ``openssl`` command for certificates), so it runs
with any Python 3.11:

    eval "$(python3 tests/controlplane/cluster.py up)"   # prints export KUBECONFIG=...
    kubectl get ns
    python3 tests/controlplane/cluster.py down

The pytest fixtures in tests/kube/conftest.py use :class:`ControlPlane` directly.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
VERSIONS_FILE = HERE / "versions.env"
DEFAULT_STATE_DIR = Path(os.environ.get("RAYSHIP_CONTROLPLANE_DIR", "/tmp/rayship-controlplane"))
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "rayship-admin"
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3


class BuildError(RuntimeError):
    """build.sh could not build or find a binary; the message names the step."""


class StartError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message carries its log tail."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm command failed; str() includes what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The pinned versions, from the KEY=VALUE lines of versions.env."""
    versions = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the binaries the control plane and its tests use."""

    kube_apiserver: str
    etcd: str
    helm: str
    kubectl: str


def ensure_binaries(*, timeout_s: float = 3600) -> Tools:
    """Run build.sh (seconds when cached) and return the binaries' paths.

    Raises BuildError with the failed step and the tail of its output.
    """
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{BUILD_SCRIPT} did not finish within {timeout_s:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
        raise BuildError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    try:
        return Tools(
            kube_apiserver=found["KUBE_APISERVER"],
            etcd=found["ETCD"],
            helm=found["HELM"],
            kubectl=found["KUBECTL"],
        )
    except KeyError as exc:
        raise BuildError(f"{BUILD_SCRIPT} printed no {exc.args[0]}= line:\n{proc.stdout}") from exc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StartError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def generate_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate
    (O=system:masters) and the service-account signing key pair, all ECDSA P-256."""
    if shutil.which("openssl") is None:
        raise StartError("the openssl command is needed for certificates (apt-get install openssl)")
    pki.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=rayship-test-ca",
        cwd=pki,
    )
    services = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    leaves = {
        "apiserver": (
            "/CN=kube-apiserver",
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,"
            + ",".join(f"DNS:{name}" for name in services),
        ),
        "admin": (f"/O=system:masters/CN={ADMIN_USER}", "extendedKeyUsage=clientAuth"),
    }
    for name, (subject, extensions) in leaves.items():
        (pki / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            + extensions
            + "\n"
        )
        _openssl(
            "req",
            "-new",
            *curve,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=pki,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=pki,
        )
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "sa.key",
        cwd=pki,
    )
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, pki: Path) -> None:
    """A self-contained kubeconfig (certificates inline) for the admin user.

    JSON is YAML, so kubectl, helm, the kubernetes client and kopf all read it."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "rayship-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {
                    "client-certificate-data": _b64(pki / "admin.crt"),
                    "client-key-data": _b64(pki / "admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "rayship-test",
                "context": {"cluster": "rayship-test", "user": ADMIN_USER, "namespace": "default"},
            }
        ],
        "current-context": "rayship-test",
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGKILL this child if the process that started it dies, so a
    pytest that is killed outright still leaves no etcd or API server behind."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_process_group(pid: int, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group led by pid, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                return
            time.sleep(0.05)
    raise RuntimeError(f"process {pid} survived SIGKILL")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ControlPlane:
    """etcd plus kube-apiserver on loopback ports, with generated certificates.

    ``start()`` returns once ``/healthz`` answers ok; ``stop()`` (also run at
    interpreter exit) terminates both process groups and, when the state
    directory was a temporary one, removes it.
    """

    def __init__(
        self,
        tools: Tools,
        *,
        state_dir: Path | None = None,
        die_with_parent: bool = True,
        extra_apiserver_flags: Sequence[str] = (),
    ) -> None:
        self.tools = tools
        self.versions = read_versions()
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="rayship-controlplane-"))
        self.pki = self.state_dir / "pki"
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.etcd_port = 0
        self.port = 0
        self._die_with_parent = die_with_parent
        self._extra_apiserver_flags = list(extra_apiserver_flags)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._atexit_registered = False
        self.crds: list[str] = []  # names of the CRDs apply_crds applied

    # ------------------------------------------------------------------ public
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for kubectl/helm/kopf subprocesses: KUBECONFIG, the pinned
        kubectl and helm first on PATH, helm's home folders inside the state dir."""
        env = dict(os.environ if base is None else base)
        tool_dirs = dict.fromkeys(
            str(Path(t).parent) for t in (self.tools.kubectl, self.tools.helm)
        )
        env["PATH"] = os.pathsep.join([*tool_dirs, env.get("PATH", "")])
        env["KUBECONFIG"] = str(self.kubeconfig)
        for var, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env[var] = str(self.state_dir / "helm" / sub)
        return env

    def start(self) -> ControlPlane:
        if self._procs:
            raise RuntimeError("already started")
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            generate_pki(self.pki)
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    self._start_etcd()
                    self._start_apiserver()
                    break
                except StartError as exc:
                    # a free port can be taken between probing it and binding it
                    if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                        raise
                    self._stop_processes()
                    shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
            write_kubeconfig(self.kubeconfig, server=self.url, pki=self.pki)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the API server, then etcd; safe to call more than once."""
        try:
            self._stop_processes()
        finally:
            if self._owns_state_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop the API server alone (etcd keeps every object): an outage of the control plane,
        as an upgrade or a crash of the API server gives. `start_apiserver` ends it."""
        proc = self._procs.pop("kube-apiserver")
        stop_process_group(proc.pid)
        proc.wait(timeout=STOP_TIMEOUT_S)

    def start_apiserver(self) -> None:
        """Start the API server again on its port, with the same certificates and etcd, so
        every client's kubeconfig still holds; returns once it is healthy."""
        self._start_apiserver(port=self.port)

    def _stop_processes(self) -> None:
        errors = []
        for name in ("kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            try:
                stop_process_group(proc.pid)
                proc.wait(timeout=STOP_TIMEOUT_S)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{name}: {exc}")
        if errors:
            raise RuntimeError("; ".join(errors))

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane (as admin unless
        another kubeconfig is given). check=True raises CalledProcessError."""
        proc = subprocess.run(
            [self.tools.kubectl, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.env(),
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def helm(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this control plane as admin."""
        proc = subprocess.run(
            [self.tools.helm, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def apply_crds(self, folder: Path, *, timeout_s: float = 60) -> list[str]:
        """kubectl apply every *.yaml/*.yml/*.json under folder; wait until each
        CustomResourceDefinition is Established. Returns the CRDs' names."""
        files = (
            sorted(
                p
                for p in folder.rglob("*")
                if p.suffix in {".yaml", ".yml", ".json"} and p.is_file()
            )
            if folder.is_dir()
            else []
        )
        names: list[str] = []
        for path in files:
            out = self.kubectl("apply", "--server-side", "-f", str(path), "-o", "name").stdout
            names += [
                n.split("/", 1)[1] for n in out.split() if n.startswith("customresourcedefinition")
            ]
        self.wait_established(names, timeout_s=timeout_s)
        self.crds += names
        return names

    def wait_established(self, names: Sequence[str], *, timeout_s: float = 60) -> None:
        """Block until the API server serves each named CRD (Established is True).

        Polled here rather than with `kubectl wait --for=condition=Established`, which fails
        outright ("conditions accessor error") when it reads a CRD before the API server has
        written any condition to it.
        """
        deadline = time.monotonic() + timeout_s
        waiting = set(names)
        while waiting:
            waiting = {name for name in waiting if not self._established(name)}
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(
                    f"CRDs not Established after {timeout_s:.0f}s: {sorted(waiting)}"
                )
            if waiting:
                time.sleep(0.2)

    def _established(self, crd: str) -> bool:
        found = json.loads(self.kubectl("get", f"crd/{crd}", "-o", "json").stdout)
        conditions = (found.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    # ------------------------------------------------------------------ internals
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.state_dir / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,  # its own process group, stopped as one
                preexec_fn=_die_with_parent if self._die_with_parent else None,  # noqa: PLW1509
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def _wait_until(self, name: str, ready: Callable[[], bool], *, timeout_s: float) -> None:
        proc = self._procs[name]
        log = self.state_dir / f"{name}.log"
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartError(
                    f"{name} exited with {proc.returncode} while starting; its log ({log}):\n"
                    f"{_tail(log)}"
                )
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise StartError(
            f"{name} not ready within {timeout_s:.0f}s (last error: {last or 'none'}); "
            f"its log ({log}):\n{_tail(log)}"
        )

    def _start_etcd(self) -> None:
        self.etcd_port, peer_port = free_port(), free_port()
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                self.tools.etcd,
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",  # a throwaway store: speed over durability
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return bool(json.load(resp).get("health") == "true")

        self._wait_until("etcd", healthy, timeout_s=STARTUP_TIMEOUT_S)

    def _start_apiserver(self, port: int = 0) -> None:
        self.port = port or free_port()
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                self.tools.kube_apiserver,
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # No controller-manager creates service-account tokens or default
                # ServiceAccounts, so the admission plugin that requires them is off
                # (as in envtest).
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                *self._extra_apiserver_flags,
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2, context=ctx) as resp:
                return bool(resp.status == 200 and resp.read().strip() == b"ok")

        self._wait_until("kube-apiserver", healthy, timeout_s=STARTUP_TIMEOUT_S)


# ---------------------------------------------------------------------- CLI
def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _exports(kubeconfig: Path, tools: Mapping[str, str]) -> str:
    dirs = dict.fromkeys(str(Path(tools[k]).parent) for k in ("kubectl", "helm"))
    path = os.pathsep.join([*dirs, "$PATH"])
    return f'export KUBECONFIG={kubeconfig}\nexport PATH="{path}"\n'


def _live_pids(state: Mapping[str, Any]) -> dict[str, int]:
    """The recorded pids that still run the binary recorded for them (pids get reused)."""
    live = {}
    for name, pid in state.get("pids", {}).items():
        binary = Path(state["tools"][name.replace("-", "_")]).name
        if _alive(pid) and binary in _cmdline(pid):
            live[name] = pid
    return live


def _running(state: Mapping[str, Any]) -> bool:
    return bool(state.get("pids")) and _live_pids(state) == state["pids"]


def cmd_up(state_dir: Path) -> int:
    state_path = _state_file(state_dir)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if _running(state):
            print(f"# already running at {state['url']}", file=sys.stderr)
            print(_exports(Path(state["kubeconfig"]), state["tools"]), end="")
            return 0
        cmd_down(state_dir, quiet=True)
    shutil.rmtree(state_dir, ignore_errors=True)  # leftovers of a failed start
    tools = ensure_binaries()
    plane = ControlPlane(tools, state_dir=state_dir, die_with_parent=False)
    plane.start()
    atexit.unregister(plane.stop)  # `up` leaves it running; `down` stops it
    state = {
        "url": plane.url,
        "kubeconfig": str(plane.kubeconfig),
        "pids": plane.pids,
        "tools": tools.__dict__,
        "versions": plane.versions,
    }
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    print(
        f"# kube-apiserver {plane.versions['KUBE_VERSION']} at {plane.url}; "
        f"logs in {state_dir}; stop with: {sys.argv[0]} down",
        file=sys.stderr,
    )
    print(_exports(plane.kubeconfig, tools.__dict__), end="")
    return 0


def cmd_down(state_dir: Path, *, quiet: bool = False) -> int:
    state_path = _state_file(state_dir)
    if not state_path.exists():
        if not quiet:
            print(f"# nothing recorded in {state_path}; nothing to stop", file=sys.stderr)
        return 0
    live = _live_pids(json.loads(state_path.read_text()))
    for name in ("kube-apiserver", "etcd"):
        if name in live:
            stop_process_group(live[name])
            if not quiet:
                print(f"# stopped {name} (pid {live[name]})", file=sys.stderr)
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def cmd_status(state_dir: Path) -> int:
    state_path = _state_file(state_dir)
    if not state_path.exists():
        print("down")
        return 1
    state = json.loads(state_path.read_text())
    running = _running(state)
    print(f"{'up' if running else 'stale'} {state['url']} KUBECONFIG={state['kubeconfig']}")
    return 0 if running else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Start or stop the test control plane (etcd + kube-apiserver on loopback)."
    )
    parser.add_argument("command", choices=["up", "down", "status", "build"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where certificates, logs and pids live (default {DEFAULT_STATE_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for key, value in ensure_binaries().__dict__.items():
                print(f"{key.upper()}={value}")
            return 0
        if args.command == "up":
            return cmd_up(args.state_dir)
        if args.command == "down":
            return cmd_down(args.state_dir)
        return cmd_status(args.state_dir)
    except (BuildError, StartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
