"""A real etcd, kube-apiserver, kube-scheduler (and kube-controller-manager) on free ports of 127.0.0.1.

Binaries come from hack/build-control-plane.sh (cached outside the repository). State — PKI,
etcd data, logs, pid files, kubeconfigs and the chosen ports — lives in one state directory,
so `up` twice reuses what runs and `down` stops exactly the processes `up` started.

The kube-controller-manager is optional (`controller_manager=True`, which the local cluster asks for):
with it, ownerReferences cascade (garbage collector), deleted namespaces empty and go away, nodes
whose heartbeats stop turn NotReady/Unknown and get tainted (node lifecycle), Deployments and
PodDisruptionBudgets get their status, and every namespace gets its `default` ServiceAccount. Each
controller runs under its own ServiceAccount (`--use-service-account-credentials`), as kubeadm sets it
up. The bare control plane of the integration tier runs without it: its tests create Node objects that
never heartbeat, which the node lifecycle controller would taint unreachable.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from virtmigrate.local import pki, procs

COMPONENTS = ("etcd", "kube-apiserver", "kube-scheduler")
CONTROLLER_MANAGER = "kube-controller-manager"
# Node lifecycle: a node whose Lease and Ready heartbeat are older than this turns Unknown and is
# tainted unreachable. Node heartbeats come every 10 s (kubelet lease renewal, node runner).
NODE_MONITOR_GRACE_PERIOD = "30s"


def cache_dir() -> Path:
    return Path(os.environ.get("VIRTMIGRATE_CACHE", Path.home() / ".cache" / "virtmigrate"))


def default_state_dir() -> Path:
    return Path(os.environ.get("VIRTMIGRATE_STATE", Path.home() / ".local" / "state" / "virtmigrate"))


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    apiserver: Path
    scheduler: Path
    controller_manager: Path

    @classmethod
    def from_cache(cls, *, controller_manager: bool = False) -> Binaries:
        c = cache_dir()
        b = cls(c / "etcd-current" / "etcd", c / "kubernetes-current" / "kube-apiserver",
                c / "kubernetes-current" / "kube-scheduler", c / "kubernetes-current" / CONTROLLER_MANAGER)
        wanted = [b.etcd, b.apiserver, b.scheduler, *([b.controller_manager] if controller_manager else [])]
        missing = [str(p) for p in wanted if not p.exists()]
        if missing:
            raise FileNotFoundError(f"control-plane binaries missing: {', '.join(missing)}; "
                                    "run hack/build-control-plane.sh (make cluster-up does)")
        return b


def _kubeconfig(server: str, ca: Path, crt: Path, key: Path, user: str) -> str:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "virtmigrate-local",
        "clusters": [{"name": "virtmigrate-local",
                      "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
        "contexts": [{"name": "virtmigrate-local",
                      "context": {"cluster": "virtmigrate-local", "user": user, "namespace": "default"}}],
    }
    return json.dumps(cfg, indent=2)


class ControlPlane:
    """One local control plane rooted at `state`."""

    def __init__(self, state: Path | None = None, *, extra_apiserver_args: tuple[str, ...] = (),
                 controller_manager: bool = False, pod_service_accounts: bool = False) -> None:
        """`pod_service_accounts`: run the ServiceAccount admission plugin, which gives pods their projected
        token volume (real kubelets mount it); off for the node runner, which hands pods tokens itself."""
        self.state = (state or default_state_dir()) / "controlplane"
        self.extra_apiserver_args = extra_apiserver_args
        self.pod_service_accounts = pod_service_accounts
        self.controller_manager = controller_manager
        self._started: dict[str, subprocess.Popen[bytes]] = {}  # children of this process, for exit codes

    @property
    def components(self) -> tuple[str, ...]:
        """The processes this control plane runs, in start order."""
        return COMPONENTS + ((CONTROLLER_MANAGER,) if self.controller_manager else ())

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    def _ports(self) -> dict[str, int]:
        f = self.state / "ports.json"
        ports: dict[str, int] = json.loads(f.read_text()) if f.exists() else {}
        want = ("etcd", "etcd_peer", "apiserver", "scheduler", "controller_manager")
        if all(name in ports for name in want):
            return ports
        # Chosen once and kept (a state written by an older checkout may lack the newer names).
        ports = {name: ports.get(name) or procs.free_port() for name in want}
        f.write_text(json.dumps(ports))
        return ports

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._ports()['apiserver']}"

    def running(self) -> bool:
        return all(procs.alive(c, self.state) for c in self.components)

    def up(self, *, timeout: float = 60.0) -> float:
        """Start whatever is not running and wait for /readyz; returns the seconds it took."""
        t0 = time.monotonic()
        if self.running() and self._ready():
            return 0.0
        bins = Binaries.from_cache(controller_manager=self.controller_manager)
        self.state.mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        d = self.pki
        pki.ensure_ca(d)
        srv_crt, srv_key = pki.ensure_cert(d, "apiserver", "/CN=kube-apiserver",
                                           san="IP:127.0.0.1,DNS:localhost")
        adm_crt, adm_key = pki.ensure_cert(d, "admin", "/O=system:masters/CN=virtmigrate-admin")
        sch_crt, sch_key = pki.ensure_cert(d, "scheduler", "/CN=system:kube-scheduler")
        # How the API server authenticates to kubelets (logs, exec) when real kubelets run.
        kcl_crt, kcl_key = pki.ensure_cert(d, "apiserver-kubelet-client",
                                           "/O=system:masters/CN=kube-apiserver-kubelet-client")
        sa_key, sa_pub = pki.ensure_sa_keys(d)
        server = f"https://127.0.0.1:{ports['apiserver']}"
        self.kubeconfig.write_text(_kubeconfig(server, d / "ca.crt", adm_crt, adm_key, "admin"))
        sched_kc = self.state / "scheduler.kubeconfig"
        sched_kc.write_text(_kubeconfig(server, d / "ca.crt", sch_crt, sch_key, "scheduler"))

        if not procs.alive("etcd", self.state):
            etcd_url = f"http://127.0.0.1:{ports['etcd']}"
            peer_url = f"http://127.0.0.1:{ports['etcd_peer']}"
            self._started["etcd"] = procs.start("etcd", [
                                 str(bins.etcd), "--name=default", f"--data-dir={self.state / 'etcd'}",
                                 f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                                 f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                                 f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync",
                                 "--quota-backend-bytes=4294967296", "--log-level=warn"], self.state)
        if not procs.alive("kube-apiserver", self.state):
            self._started["kube-apiserver"] = procs.start("kube-apiserver", [
                str(bins.apiserver),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}", f"--cert-dir={self.state / 'certs'}",
                f"--tls-cert-file={srv_crt}", f"--tls-private-key-file={srv_key}",
                f"--client-ca-file={d / 'ca.crt'}",
                "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={server}", f"--api-audiences={server}",
                f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
                *(() if self.pod_service_accounts else ("--disable-admission-plugins=ServiceAccount",)),
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true", "--v=1",
                f"--kubelet-client-certificate={kcl_crt}", f"--kubelet-client-key={kcl_key}",
                # Node names do not resolve here; every node's InternalIP is 127.0.0.1.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                *self.extra_apiserver_args], self.state)
        self._wait_ready(timeout)
        if not procs.alive("kube-scheduler", self.state):
            procs.start("kube-scheduler", [
                str(bins.scheduler), f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}", f"--authorization-kubeconfig={sched_kc}",
                "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
                "--leader-elect=false", "--v=1"], self.state)
        if self.controller_manager and not procs.alive(CONTROLLER_MANAGER, self.state):
            self._start_controller_manager(bins, server, ports["controller_manager"])
        return time.monotonic() - t0

    def _start_controller_manager(self, bins: Binaries, server: str, port: int) -> None:
        d = self.pki
        crt, key = pki.ensure_cert(d, "controller-manager", "/CN=system:kube-controller-manager")
        kc = self.state / "controller-manager.kubeconfig"
        kc.write_text(_kubeconfig(server, d / "ca.crt", crt, key, "controller-manager"))
        procs.start(CONTROLLER_MANAGER, [
            str(bins.controller_manager), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--leader-elect=false",
            # Every controller under its own ServiceAccount in kube-system, with the RBAC the API server
            # bootstraps for it; tokens are minted through the TokenRequest API.
            "--use-service-account-credentials=true",
            # The ServiceAccount token controller signs legacy token Secrets with the API server's key;
            # the root CA publisher puts kube-root-ca.crt into every namespace.
            f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            "--controllers=*", "--node-monitor-period=2s",
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}",
            # 127.0.0.1 is every node's address here; there is no pod network to allocate.
            "--allocate-node-cidrs=false", "--v=1"], self.state)

    def _ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        try:
            with urllib.request.urlopen(self.server + "/readyz", context=ctx, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c, proc in self._started.items():
                if proc.poll() is not None:
                    log = (self.state / "logs" / f"{c}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{c} exited with {proc.returncode} during start-up; "
                                       f"last log lines:\n{log}")
            if self._ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"kube-apiserver at {self.server} not ready after {timeout:.0f}s; "
                           f"see {self.state / 'logs'}")

    def down(self) -> list[str]:
        """Stop what `up` started (reverse order) and remove all state; returns what was stopped."""
        # Every component that may run here, whatever this object was told: `down` stops what any `up` started.
        stopped = [c for c in reversed((*COMPONENTS, CONTROLLER_MANAGER)) if procs.stop(c, self.state)]
        shutil.rmtree(self.state, ignore_errors=True)
        return stopped
