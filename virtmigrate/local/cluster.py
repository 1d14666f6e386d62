"""The local cluster: control plane + N libvirt hosts + the node runner (+ the controller), on one machine.

Driven by `virtmigrate cluster up|down|status` (virtmigrate/cmd/local.py), tests/e2e/conftest.py and
bench/bench_cluster.py. Everything lives under one state directory:

    <state>/controlplane/   etcd, kube-apiserver, kube-scheduler, kube-controller-manager
                            (virtmigrate.local.controlplane)
    <state>/libvirt/        one libvirtd per node in its own mount namespace (virtmigrate.local.libvirthosts)
    <state>/pods/           per-pod directories of the node runner (logs, termination logs, kubeconfigs)
    <state>/pids, logs/     the node runner and controller processes (virtmigrate.local.procs)
    <state>/prometheus/     a real Prometheus scraping the controller, with its alert rules
                            (virtmigrate.local.prometheus)
    <state>/cluster.json    the node count and settings chosen by the first `up`

`up` starts only what is not running, so a second `up` is a cheap check (a "warm" up); `down` stops
everything in reverse order and removes the state, then `leftovers()` checks — not assumes — that no
process, mount, libvirt domain or listener of the cluster is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from virtmigrate import errors
from virtmigrate.api.constants import ANNOTATION_LIBVIRT_URI, ANNOTATION_MIGRATION_ADDRESS
from virtmigrate.clock import RealClock
from virtmigrate.controller.config import DEFAULT_IMAGE_DIRS
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import NODES, Resource
from virtmigrate.local import kubeletnodes, metricsnet, procs, supervise
from virtmigrate.local import prometheus as prom
from virtmigrate.local.controlplane import ControlPlane, default_state_dir
from virtmigrate.local.guest import guest_kernel
from virtmigrate.local.libvirthosts import SOCKET_GID, LibvirtHosts, mount_ns

REPO = Path(__file__).resolve().parent.parent.parent
MANIFESTS = REPO / "manifests"
# Applied by `up`: the CRDs, and the namespace, service accounts and RBAC that agent pods run with.
CLUSTER_MANIFESTS = ("crds", "namespace.yaml", "serviceaccounts.yaml", "rbac.yaml", "launcher-policy.yaml",
                     "controller-policy.yaml")
NODE_RUNNER = "noderunner"
DEMO_NAMESPACE = "default"  # the namespace `make demo` uses; agents there may report progress
AGENT_SERVICE_ACCOUNT = "virtmigrate-agent"
CLUSTERROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", kind="ClusterRoleBinding",
                               namespaced=False)
CONTROLLER = "controller"
# Taints the node lifecycle controller keeps on a node that is not Ready (or whose heartbeats stopped).
NODE_CONDITION_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
# Node i migrates on 127.0.0.<20 + i> (ports 50152 + 100 i ...): apart from the agent's integration hosts
# (127.0.0.10, .11), so both can run on one machine at once.
FIRST_MIGRATION_ADDRESS = 20


@dataclass
class UpReport:
    """How long each stage of `up` took (0 for a stage that found everything running)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _bin(name: str) -> Path:
    return Path(sys.executable).parent / name


class LocalCluster:
    """One local cluster rooted at `state`."""

    def __init__(self, state: Path | None = None, *, nodes: int | None = None,
                 node_memory: int = 4 << 30, node_cpus: int = 2, controller: bool = True,
                 first_address: int = FIRST_MIGRATION_ADDRESS) -> None:
        self.state = state or default_state_dir()
        saved = self._saved()
        self.nodes = nodes if nodes is not None else int(str(saved.get("nodes", 3)))
        self.node_memory = node_memory
        self.node_cpus = node_cpus
        self.controller = controller
        # "runner" (the node runner) or "kubelet" (real kubelets): $VIRTMIGRATE_NODES at the first `up`.
        self.node_mode = str(saved.get("node_mode") or kubeletnodes.mode())
        self.control_plane = ControlPlane(self.state, controller_manager=True,
                                          pod_service_accounts=self.node_mode == "kubelet")
        self.hosts = LibvirtHosts(self.state, self.nodes, first_address=first_address)
        self.kubelets = kubeletnodes.KubeletNodes(self.state, self.hosts, self.nodes)
        self.prometheus = prom.LocalPrometheus(self.state)
        # Node runner clusters: where the host controller serves /metrics (virtmigrate.local.metricsnet);
        # the first `up`'s, so that a `down` given another first address never removes another cluster's.
        self.metrics_net = metricsnet.metrics_net(int(str(saved.get("metrics_net", first_address))))

    def _saved(self) -> dict[str, object]:
        f = self.state / "cluster.json"
        try:
            out: dict[str, object] = json.loads(f.read_text())
            return out
        except (OSError, ValueError):
            return {}

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def client(self) -> KubeClient:
        return KubeClient.from_kubeconfig(str(self.kubeconfig))

    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(self.nodes)]

    # --- up -----------------------------------------------------------------------------------

    def up(self, *, timeout: float = 120.0) -> UpReport:
        """Start whatever is not running and wait until every node is Ready."""
        saved = self._saved()
        if saved and int(str(saved.get("nodes"))) != self.nodes and self.running_any():
            raise errors.ConfigError(f"the local cluster at {self.state} runs {saved.get('nodes')} nodes; "
                                     f"run `virtmigrate cluster down` before asking for {self.nodes}")
        rep = UpReport()
        t = time.monotonic()
        self.control_plane.up(timeout=timeout)
        rep.seconds["control_plane"] = time.monotonic() - t
        (self.state / "cluster.json").write_text(json.dumps({
            "nodes": self.nodes, "node_mode": self.node_mode,
            "metrics_net": self.metrics_net.index}))

        t = time.monotonic()
        self._apply_manifests()
        self.grant_agent_progress(DEMO_NAMESPACE)
        rep.seconds["manifests"] = time.monotonic() - t

        t = time.monotonic()
        self.hosts.up(timeout=timeout)
        rep.seconds["libvirt_hosts"] = time.monotonic() - t

        t = time.monotonic()
        guest_kernel()
        rep.seconds["guest_kernel"] = time.monotonic() - t

        t = time.monotonic()
        since = ""
        if self.node_mode == "kubelet":
            self._kubelets_up(timeout)
        elif not procs.alive(NODE_RUNNER, self.state):
            # Node objects may still say Ready from a runner that died: wait for fresh heartbeats.
            since = RealClock().wall().strftime("%Y-%m-%dT%H:%M:%SZ")
            procs.start(NODE_RUNNER, [sys.executable, "-m", "virtmigrate.local.noderunner",
                                      f"--state={self.state}", f"--kubeconfig={self.kubeconfig}",
                                      f"--nodes={self.nodes}", f"--node-memory={self.node_memory}",
                                      f"--node-cpus={self.node_cpus}"], self.state)
        self._wait_nodes_ready(timeout, since=since)
        rep.seconds["nodes"] = time.monotonic() - t

        t = time.monotonic()
        if self.controller and self.node_mode == "kubelet":
            self._install_controller(timeout)
        elif self.controller and _bin("virtmigrate-controller").exists():
            self.start_controller()
        rep.seconds["controller"] = time.monotonic() - t

        t = time.monotonic()
        self._prometheus_up(timeout)
        rep.seconds["prometheus"] = time.monotonic() - t
        return rep

    def _prometheus_up(self, timeout: float) -> None:
        """Prometheus, configured from manifests/monitoring/ (virtmigrate.local.prometheus). With the node
        runner the controller is a process on this machine: the Service of manifests/service.yaml fronts it
        as an external backend (no selector, our EndpointSlice naming the address of its metrics namespace).
        On kubelet nodes the real Service, applied by the install, selects the Deployment's pods."""
        service = prom.load(MANIFESTS / "service.yaml")
        if self.node_mode != "kubelet" and self.controller:
            self._apply_once("metrics-backend", prom.external_backend(service, address=self.metrics_net.address,
                                                                     port=metricsnet.PORT))
        self.prometheus.up(monitor=prom.load(MANIFESTS / "monitoring" / "servicemonitor.yaml"),
                           rule=prom.load(MANIFESTS / "monitoring" / "prometheusrule.yaml"),
                           api_server=self.control_plane.server, ca_file=self.control_plane.pki / "ca.crt",
                           apply=self._apply_once, kubectl=self._kubectl,
                           pods_of=service if self.node_mode == "kubelet" else None, timeout=timeout)

    @property
    def controller_metrics_url(self) -> str:
        """Node runner clusters: the host controller's /metrics, /healthz, /readyz (inside its namespace)."""
        return f"http://{self.metrics_net.address}:{metricsnet.PORT}"

    def _kubelets_up(self, timeout: float) -> None:
        """Real kubelets (VIRTMIGRATE_NODES=kubelet): the images built and loaded into every node's
        containerd, the nodes' identities, then each Node's libvirt annotations once it has registered."""
        archives = [Path(_script_output("image.sh")), Path(_script_output("pause-image.sh"))]
        pause = archives[1].name.removesuffix(".oci.tar").replace("pause-", "virtmigrate/pause:", 1)
        client = self.client()
        with contextlib.suppress(errors.AlreadyExists):  # what the Node authorizer would grant, by RBAC
            client.create(CLUSTERROLEBINDINGS, {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "virtmigrate-local-nodes"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]})
        kcs = kubeletnodes.node_kubeconfigs(self.control_plane.pki, self.control_plane.server, self.state,
                                            self.nodes)
        self.kubelets.up(kubeconfig_for=kcs, archives=archives, sandbox_image=pause, timeout=timeout)
        self.image_file.write_text(archives[0].name.removesuffix(".oci.tar").replace("virtmigrate-",
                                                                                     "virtmigrate/controller:", 1))
        port = self.control_plane.server.rsplit(":", 1)[1]
        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                      input=json.dumps({"apiVersion": "v1", "kind": "List",
                                        "items": kubeletnodes.host_network_policy(int(port))}))
        deadline = time.monotonic() + timeout
        pending = set(range(self.nodes))
        while pending:
            for i in sorted(pending):
                h = self.hosts.host(i)
                with contextlib.suppress(errors.NotFound):
                    client.patch(NODES, f"node{i}", {"metadata": {"annotations": {
                        ANNOTATION_LIBVIRT_URI: h.uri, ANNOTATION_MIGRATION_ADDRESS: h.migration_uri}}})
                    # The kubelet refuses a loopback --node-ip ("nodeIP can't be loopback address") and then
                    # reports no address at all; the API server needs one to reach it (logs, exec). The
                    # kubelet leaves addresses it could not compute alone.
                    client.patch(NODES, f"node{i}", {"status": {"addresses": [
                        {"type": "InternalIP", "address": self.kubelets.node_ip(i)},
                        {"type": "Hostname", "address": f"node{i}"}]}}, subresource="status")
                    pending.discard(i)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"kubelets of nodes {sorted(pending)} did not register after {timeout:.0f}s; "
                                   f"see {self.kubelets.state}/../logs")
            time.sleep(0.2)

    @property
    def image_file(self) -> Path:
        """Kubelet nodes: the reference of the image `make image` built and every node loaded."""
        return self.kubelets.state / "image"

    def _kubectl(self, *args: str, timeout: float = 120, input: str | None = None) -> str:
        proc = subprocess.run([str(_bin("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=timeout, input=input)
        if proc.returncode != 0:
            raise errors.ConfigError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _manifests_digest(self) -> str:
        h = hashlib.sha256()
        for m in CLUSTER_MANIFESTS:
            p = MANIFESTS / m
            for f in sorted(p.rglob("*.yaml")) if p.is_dir() else [p] if p.exists() else []:
                h.update(f.name.encode() + b"\0" + f.read_bytes())
        return h.hexdigest()

    def _apply_manifests(self) -> None:
        """Apply the cluster manifests unless exactly these were applied to this cluster already."""
        digest = self._manifests_digest()
        marker = self.state / "manifests.sha256"
        if marker.exists() and marker.read_text() == digest:
            return
        self._apply_manifests_now()
        marker.write_text(digest)

    def _apply_once(self, name: str, items: list[dict[str, object]]) -> None:
        """Apply `items` (server-side) unless exactly these were applied to this cluster already: a warm `up`
        stays cheap. The marker is <state>/<name>.sha256."""
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        marker = self.state / f"{name}.sha256"
        if marker.exists() and marker.read_text() == digest:
            return
        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)
        marker.write_text(digest)

    def _apply_manifests_now(self) -> None:
        files = [str(MANIFESTS / m) for m in CLUSTER_MANIFESTS if (MANIFESTS / m).exists()]
        self._kubectl("apply", *[a for f in files for a in ("-f", f)])
        self._kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      "crd/migrations.kubevirt.io", "crd/vms.kubevirt.io",
                      "crd/migrationpolicies.migrations.kubevirt.io")

    def grant_agent_progress(self, namespace: str) -> None:
        """The pods' identities in `namespace`, as the controllers make them before their first pod there
        (virtmigrate.controller.identities); for tests that create pods before any controller acts."""
        from virtmigrate.controller.identities import Identities

        Identities(self.client()).ensure(namespace)

    @property
    def install_dir(self) -> Path:
        """Kubelet nodes: the local overlay of manifests/ the controller is installed from."""
        return self.state / "install"

    def _install_controller(self, timeout: float) -> None:
        """Kubelet nodes: the controller as users install it (docs/install.md), `kubectl apply -k` of a local
        overlay of manifests/, then its Deployment's rollout (its pods Ready through their real probes)."""
        tag = self.image_file.read_text().strip().rsplit(":", 1)[1]
        self.install_dir.mkdir(parents=True, exist_ok=True)
        overlay = kubeletnodes.install_overlay(os.path.relpath(MANIFESTS, self.install_dir), tag=tag,
                                               socket_group=SOCKET_GID,
                                               image_dirs=f"{DEFAULT_IMAGE_DIRS},{guest_kernel().parent}")
        (self.install_dir / "kustomization.yaml").write_text(json.dumps(overlay, indent=2))
        self._kubectl("apply", "-k", str(self.install_dir))
        self._kubectl("-n", kubeletnodes.CONTROLLER_NAMESPACE, "rollout", "status",
                      f"deployment/{kubeletnodes.CONTROLLER_DEPLOYMENT}", f"--timeout={int(timeout)}s",
                      timeout=timeout + 10)

    def _start_controller(self) -> None:
        """The controller runs as a machine process with the admin identity (see the report of issue 6:
        running it as a pod of the node runner needs the Deployment's pod template)."""
        # Its /metrics socket is bound by the supervisor inside the metrics namespace and inherited (fd 3).
        metricsnet.up(self.metrics_net)
        command = [sys.executable, str(_bin("virtmigrate-controller")), f"--kubeconfig={self.kubeconfig}",
                   f"--metrics-fd={supervise.LISTEN_FD}", "--log-format=console",
                   f"--agent-service-account={AGENT_SERVICE_ACCOUNT}",
                   # the test guest's kernel lies in the cache (hack/build-guest.sh)
                   f"--image-dirs={DEFAULT_IMAGE_DIRS},{guest_kernel().parent}", *self._pod_flags()]
        # Under a supervisor that starts it again when it exits on failure (it exits 1 when it loses its
        # Lease), as the kubelet restarts the Deployment's container; the pid file names the controller itself.
        pidfile = self.state / "pids" / f"{CONTROLLER}.pid"
        pidfile.unlink(missing_ok=True)
        # A supervisor of an earlier start may be waiting out its back-off: it would start a second controller.
        procs.stop(f"{CONTROLLER}-supervisor", self.state, grace=5)
        procs.start(f"{CONTROLLER}-supervisor", [sys.executable, "-m", "virtmigrate.local.supervise",
                                                  f"--pidfile={pidfile}",
                                                  f"--log={self.state / 'logs' / f'{CONTROLLER}.log'}",
                                                  f"--listen={self.metrics_net.address}:{metricsnet.PORT}",
                                                  f"--listen-netns={self.metrics_net.path}", "--", *command],
                    self.state, env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        deadline = time.monotonic() + 10
        while not procs.alive(CONTROLLER, self.state) and time.monotonic() < deadline:
            time.sleep(0.02)

    def start_controller(self) -> None:
        """Start the controller (under its supervisor) unless it runs."""
        if not procs.alive(CONTROLLER, self.state):
            self._start_controller()

    def _pod_flags(self) -> list[str]:
        """Kubelet nodes run the pods from the built image, reaching libvirt through the socket's group."""
        if self.node_mode != "kubelet":
            return []
        return [f"--image={self.image_file.read_text().strip()}", f"--libvirt-socket-group={SOCKET_GID}"]

    def nodes_ready(self, *, since: str = "", untainted: bool = False) -> dict[str, bool]:
        """Node name -> Ready (with a heartbeat at or after `since`, an RFC 3339 time, when given; and, with
        `untainted`, without the not-ready/unreachable taints, which the node lifecycle controller removes
        a moment after the node turns Ready — until then the scheduler places no pod there)."""
        client = self.client()
        out = {n: False for n in self.node_names()}
        for node in client.list_all(NODES):
            name = node["metadata"]["name"]
            conds = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}
            ready = conds.get("Ready") or {}
            taints = {t.get("key") for t in (node.get("spec") or {}).get("taints") or []}
            if name in out:
                out[name] = (ready.get("status") == "True" and str(ready.get("lastHeartbeatTime", "")) >= since
                             and not (untainted and taints & NODE_CONDITION_TAINTS))
        return out

    def _wait_nodes_ready(self, timeout: float, *, since: str = "") -> None:
        deadline = time.monotonic() + timeout
        while True:
            # A just-forked child still shows its parent's argv: only trust "dead" after a moment.
            if (self.node_mode == "runner" and time.monotonic() > deadline - timeout + 2
                    and not procs.alive(NODE_RUNNER, self.state)):
                tail = (self.state / "logs" / f"{NODE_RUNNER}.log").read_text(errors="replace")[-3000:]
                raise errors.ConfigError(f"the node runner exited during start-up; log tail:\n{tail}")
            try:
                if all(self.nodes_ready(since=since, untainted=True).values()):
                    return
            except errors.KubeError:
                pass  # the API may be briefly unavailable; keep waiting
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes not Ready and untainted after {timeout:.0f}s: "
                                   f"{self.nodes_ready(untainted=True)}; "
                                   f"see {self.state / 'logs' / (NODE_RUNNER + '.log')}")
            time.sleep(0.1)

    # --- status and down ------------------------------------------------------------------------

    def running_any(self) -> bool:
        return (self.control_plane.running() or procs.alive(NODE_RUNNER, self.state)
                or any(self.hosts.pid(h) is not None for h in self.hosts.hosts))

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "state": str(self.state), "nodes": self.nodes,
            "control_plane": self.control_plane.running(),
            "node_mode": self.node_mode,
            "node_runner": procs.alive(NODE_RUNNER, self.state),
            "controller": procs.alive(CONTROLLER, self.state),
            "prometheus": self.prometheus.url if self.prometheus.running() else False,
            "libvirt_hosts": {h.name: self.hosts.pid(h) is not None for h in self.hosts.hosts},
        }
        if self.control_plane.running():
            try:
                out["nodes_ready"] = self.nodes_ready()
            except errors.KubeError as e:
                out["nodes_ready"] = str(e)
        return out

    def down(self) -> list[str]:
        """Stop everything `up` started, in reverse order, and remove the state; returns what stopped."""
        if not self.state.exists():
            return []
        stopped = ["prometheus"] if self.prometheus.down() else []  # first: a client of the API and controller
        procs.stop(f"{CONTROLLER}-supervisor", self.state, grace=5)  # first: it would start the controller again
        stopped += [name for name in (CONTROLLER, NODE_RUNNER) if procs.stop(name, self.state, grace=15)]
        if metricsnet.down(self.metrics_net):  # after the controller: its socket lives in the namespace
            stopped.append(f"network namespace {self.metrics_net.netns}")
        stopped += self.kubelets.down()
        had_hosts = any(self.hosts.pid(h) is not None for h in self.hosts.hosts)
        self.hosts.down()
        if had_hosts:
            stopped.append("libvirt hosts")
        stopped += self.control_plane.down()
        shutil.rmtree(self.state, ignore_errors=True)
        return stopped




def leftovers(state: Path, *, ports: list[int], namespaces: list[str], since: float | None = None,
              kubelet: bool = False, metrics_net: metricsnet.MetricsNet | None = None) -> list[str]:
    """What of a cluster survived `down`: processes whose command line or mount namespace belongs to it,
    mounts of its folders, listeners on its ports, its metrics network namespace and veth pair
    (`metrics_net`) and, when it ran real kubelets (`kubelet`), its nodes' cgroup roots (the kubelets'
    QoS and pod cgroups, runc's container cgroups). Empty means clean.
    `since` (wall time, e.g. when `down` began): a process started later is not the cluster's — the kernel
    reuses the number of a mount namespace that is gone, and another cluster on the machine may get it."""
    found: list[str] = []
    me = os.getpid()
    needle = str(state)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue
        if needle in cmd or mount_ns(int(entry.name)) in namespaces:
            began = procs.started_at(int(entry.name)) if since is not None and needle not in cmd else None
            if began is not None and since is not None and began > since:
                continue  # a newer process in a reused namespace number: another cluster's
            found.append(f"process {entry.name}: {cmd.strip()[:200]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if needle in line:
            found.append(f"mount: {line}")
    listening = _listening_ports()
    found += [f"listener on 127.0.0.1:{p}" for p in ports if p in listening]
    if metrics_net is not None:
        found += metricsnet.present(metrics_net)
    if kubelet:
        found += [f"cgroup {d}" for d in kubeletnodes.pod_cgroups(state)]
    return found


def _script_output(script: str) -> str:
    """The last line hack/<script> prints (the path of what it built or found cached)."""
    proc = subprocess.run(["bash", str(REPO / "hack" / script)], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHON": sys.executable})
    if proc.returncode != 0:
        raise errors.ConfigError(f"hack/{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.split()[-1]


def _listening_ports() -> set[int]:
    out = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A":  # LISTEN
                out.add(int(parts[1].rsplit(":", 1)[1], 16))
    return out


def cluster_namespaces(c: LocalCluster) -> list[str]:
    """The mount namespaces the cluster's libvirt hosts ever used (read before `down`)."""
    out: list[str] = []
    for h in c.hosts.hosts:
        with contextlib.suppress(OSError):  # a host that never started has no file
            out += (h.root / "namespaces").read_text().split()
    return out


def cluster_ports(c: LocalCluster) -> list[int]:
    """The ports the cluster's daemons listen on (read before `down` removes the state)."""
    ports: list[int] = []
    f = c.control_plane.state / "ports.json"
    if f.exists():
        ports += [int(p) for p in json.loads(f.read_text()).values()]
    f = c.prometheus.state / "prometheus.json"
    if f.exists():
        ports.append(c.prometheus.port)
    # Migration ports are not listed: only QEMU listens there, during a migration, and QEMU processes
    # are found by mount namespace; other programs may legitimately hold ports inside those ranges.
    ports += [h.tcp_port for h in c.hosts.hosts]
    if (c.kubelets.state / "ports.json").exists():
        ports += c.kubelets.ports()
    return ports
