"""Real nodes: a kubelet v1.37.2 and Debian's containerd 1.6 + runc per local node (VIRTMIGRATE_NODES=kubelet).

Each node's containerd and kubelet run inside that node's libvirt mount namespace (`nsenter` into the
host's `tini`), so a pod's hostPath `/run/libvirt` is that node's own libvirt socket folder, as on a real
node. Everything a node keeps lives under `<state>/kubelet/node<i>/`: containerd's root, state and socket,
the kubelet's root directory, pod logs, a loopback-only CNI configuration (pods use the host network),
certificates (CN system:node:node<i>, O system:nodes) and configurations. Ports are chosen once and kept in
`ports.json`. Facts behind each setting: shared/notes/real-nodes.md.

Fed by virtmigrate.local.cluster (which starts the control plane and the libvirt hosts first); `up` loads
the image archives of hack/image.sh and hack/pause-image.sh into every containerd and waits for the Nodes to
register; `down` stops the kubelets, kills and removes every container, stops containerd and removes the
cgroups its containers had, so no process, mount or cgroup outlives it (the namespace sweep of
libvirthosts.down() catches any shim left).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from virtmigrate.local import pki, procs
from virtmigrate.local.controlplane import cache_dir
from virtmigrate.local.libvirthosts import LibvirtHosts

CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


@dataclass(frozen=True)
class NodePaths:
    """Where node `name` keeps its runtime's and kubelet's files."""

    name: str
    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"


def containerd_config(n: NodePaths, *, sandbox_image: str) -> str:
    """containerd 1.6's configuration for one node: private root, state and socket; the CRI plugin with
    restrict_oom_score_adj (root lacks CAP_SYS_RESOURCE here) and runc on cgroupfs."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f'root = "{n.root / "containerd" / "root"}"',
        f'state = "{n.root / "containerd" / "state"}"',
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
        ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
        "[grpc]", f'  address = "{n.containerd_socket}"',
        "[ttrpc]", f'  address = "{n.containerd_socket}.ttrpc"',
        "[metrics]", '  address = ""',
        f"[{cri}]", f'  sandbox_image = "{sandbox_image}"', "  restrict_oom_score_adj = true",
        f"[{cri}.containerd]", '  snapshotter = "overlayfs"', '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]", '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]", "  SystemdCgroup = false",
        f"[{cri}.cni]", f'  bin_dir = "{CNI_BIN_DIR}"', f'  conf_dir = "{n.root / "cni"}"', "",
    ])


def kubelet_config(n: NodePaths, *, address: str, port: int, healthz_port: int,
                   client_ca: Path, cgroup_root: str) -> dict[str, object]:
    """The KubeletConfiguration these machines need (cgroup v1 hierarchies, no CAP_SYS_RESOURCE); the
    kubelet serves on `address`, the node's own loopback address (its InternalIP).

    Pods get the QoS cgroup tree of a real node (cgroupsPerQOS) under the node's own `cgroup_root`: the
    node's `kubepods` weighs its allocatable CPU (2048 shares for 2 CPUs) against the machine's other
    processes, and each pod weighs its requests inside it. Without it every container of every node sat
    in one `/k8s.io` cgroup that weighed as much as a single process of the machine: on a busy machine a
    pod start (runc, the pause container, the program's own start) got a fraction of a core. Nothing is
    enforced (enforceNodeAllocatable: []): a shared test machine's memory is not the node's to limit."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupsPerQOS": True, "cgroupRoot": cgroup_root,
        "enforceNodeAllocatable": [],
        "failSwapOn": False, "localStorageCapacityIsolation": False, "resolvConf": "",
        "containerRuntimeEndpoint": f"unix://{n.containerd_socket}",
        "address": address, "port": port, "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "readOnlyPort": 0, "podLogsDir": str(n.root / "pod-logs"),
        # The API server reaches the kubelet (logs, exec) with a client certificate of the cluster's CA.
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        # A shared test machine's disk is not this node's to manage: no evictions, no image GC.
        "evictionHard": {}, "imageGCHighThresholdPercent": 100,
        "nodeStatusUpdateFrequency": "10s", "nodeLeaseDurationSeconds": 40,
    }


HOST_NETWORK_POLICY = "virtmigrate-local-host-network"


def host_network_policy(api_port: int) -> list[dict[str, object]]:
    """The local cluster's stand-in for a pod network and kube-proxy (a MutatingAdmissionPolicy and its
    binding): every pod joins the machine's network, where the nodes, their libvirtds and the API server
    listen on loopback addresses, and its in-cluster client finds the API server at 127.0.0.1 instead of
    the `kubernetes` Service's ClusterIP, which nothing routes here. A real cluster has both already; the
    pods virtmigrate creates need neither (docs/install.md)."""
    env = ", ".join(f'Object.spec.containers.env{{name: "{k}", value: "{v}"}}'
                    for k, v in (("KUBERNETES_SERVICE_HOST", "127.0.0.1"), ("KUBERNETES_SERVICE_PORT", api_port)))
    expression = ("Object{spec: Object.spec{hostNetwork: true, containers: object.spec.containers.map(c, "
                  f"Object.spec.containers{{name: c.name, env: [{env}]}})}}}}")
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
         "metadata": {"name": HOST_NETWORK_POLICY},
         "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                          "operations": ["CREATE"], "resources": ["pods"]}]},
                  "failurePolicy": "Fail", "reinvocationPolicy": "Never",
                  "mutations": [{"patchType": "ApplyConfiguration",
                                 "applyConfiguration": {"expression": expression}}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
         "metadata": {"name": HOST_NETWORK_POLICY}, "spec": {"policyName": HOST_NETWORK_POLICY}},
    ]


CONTROLLER_NAMESPACE = "virtmigrate-system"
CONTROLLER_DEPLOYMENT = "virtmigrate-controller"
RUNNING_TIMEOUT_S = 120  # the installed controller's --running-timeout on kubelet nodes


def install_overlay(base: str, *, tag: str, socket_group: int, image_dirs: str) -> dict[str, object]:
    """The local overlay of manifests/ (`base`, relative to the overlay's folder) that `kubectl apply -k`
    installs on kubelet nodes, as docs/install.md tells a user to: the image `make image` built, the nodes'
    libvirt socket group and the test guest's folder; and what the machine's lack of a pod network asks
    for — its pods share the host network (host_network_policy), which the "restricted" Pod Security
    level of the controller's namespace refuses, and where two replicas on different nodes listen on their
    own node's address instead of 0.0.0.0."""
    image = f"virtmigrate/controller:{tag}"
    deployment_patch = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": CONTROLLER_DEPLOYMENT, "namespace": CONTROLLER_NAMESPACE},
        "spec": {"template": {"spec": {"containers": [{"name": "controller", "env": [
            # The base's replacement keeps VIRTMIGRATE_IMAGE equal to the base's image only.
            {"name": "VIRTMIGRATE_IMAGE", "value": image},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "VIRTMIGRATE_METRICS_ADDRESS", "value": "$(POD_IP):8080"}]}]}}}}
    namespace_patch = [{"op": "replace", "path": f"/metadata/labels/pod-security.kubernetes.io~1{mode}",
                        "value": "privileged"} for mode in ("enforce", "warn", "audit")]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [base],
        "images": [{"name": "virtmigrate/controller", "newTag": tag}],
        "configMapGenerator": [{"name": "virtmigrate-controller-config", "namespace": CONTROLLER_NAMESPACE,
                                "behavior": "merge", "literals": [
                                    f"VIRTMIGRATE_LIBVIRT_SOCKET_GROUP={socket_group}",
                                    f"VIRTMIGRATE_IMAGE_DIRS={image_dirs}",
                                    "VIRTMIGRATE_AGENT_SERVICE_ACCOUNT=virtmigrate-agent",
                                    # An agent whose node went away (kubelet silent: its pod's status frozen)
                                    # is stopped after the Running bound, then the launchers' reports decide:
                                    # 2 min here instead of 1 h, within a test's patience.
                                    f"VIRTMIGRATE_RUNNING_TIMEOUT={RUNNING_TIMEOUT_S}"]}],
        "patches": [{"patch": json.dumps(deployment_patch)},
                    {"target": {"kind": "Namespace", "name": CONTROLLER_NAMESPACE},
                     "patch": json.dumps(namespace_patch)}],
    }


def node_labels(index: int) -> str:
    """The labels a kubelet may set on its own Node (kubernetes.io/hostname, arch and os it sets itself)."""
    from virtmigrate.local.noderunner.node import zone_of

    return f"topology.kubernetes.io/zone={zone_of(index)},topology.kubernetes.io/region=local"


class KubeletNodes:
    """`count` kubelet nodes under `state/kubelet`, next to the libvirt hosts of the same index."""

    def __init__(self, state: Path, hosts: LibvirtHosts, count: int) -> None:
        self.state = state / "kubelet"
        self.hosts = hosts
        self.count = count

    def node_ip(self, index: int) -> str:
        """Node `index`'s address (its InternalIP): the loopback address its libvirt host migrates on.
        Distinct per node, so host-network pods on different nodes may listen on the same port (the
        nodes share the machine's network) and the scheduler's host-port check means what it says."""
        return self.hosts.host(index).migration_address

    def paths(self, index: int) -> NodePaths:
        return NodePaths(f"node{index}", self.state / f"node{index}")

    def cgroup_root(self, index: int) -> str:
        """Node `index`'s cgroup root (the kubelet's cgroupRoot), one per cluster and node."""
        return f"/{cgroup_prefix(self.state.parent)}node{index}"

    def _ports(self) -> dict[str, int]:
        f = self.state / "ports.json"
        ports: dict[str, int] = json.loads(f.read_text()) if f.exists() else {}
        for i in range(self.count):
            for kind in ("kubelet", "healthz"):
                ports.setdefault(f"node{i}-{kind}", procs.free_port())
        self.state.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(ports))
        return ports

    def ports(self) -> list[int]:
        return list(self._ports().values())

    def _nsenter(self, index: int) -> list[str]:
        return self.hosts.nsenter(index)

    def _ctr(self, index: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "-a", str(self.paths(index).containerd_socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=300, check=check)

    def up(self, *, kubeconfig_for: dict[str, Path], archives: list[Path], sandbox_image: str,
           timeout: float = 120.0) -> None:
        """Start containerd (loading `archives`) and the kubelet of every node that does not run."""
        bins = cache_dir() / "kubernetes-current"
        kubelet = bins / "kubelet"
        if not kubelet.exists():
            raise FileNotFoundError(f"{kubelet} missing: run VIRTMIGRATE_NODES=kubelet hack/build-control-plane.sh")
        ports = self._ports()
        for i in range(self.count):
            n = self.paths(i)
            name = f"containerd-{n.name}"
            if not procs.alive(name, self.state):
                for sub in ("containerd", "kubelet", "pod-logs", "cni", "certs"):
                    (n.root / sub).mkdir(parents=True, exist_ok=True)
                (n.root / "cni" / "10-loopback.conflist").write_text(json.dumps(
                    {"cniVersion": "1.0.0", "name": "loopback", "plugins": [{"type": "loopback"}]}))
                n.containerd_config.write_text(containerd_config(n, sandbox_image=sandbox_image))
                procs.start(name, [*self._nsenter(i), "containerd", f"--config={n.containerd_config}"], self.state,
                            exe="containerd")
        for i in range(self.count):
            n = self.paths(i)
            _wait(lambda n=n: n.containerd_socket.exists(), 30, f"containerd of {n.name}")  # type: ignore[misc]
        # Every node loads what it lacks, at once (also a running node, when the image was rebuilt).
        with ThreadPoolExecutor(self.count) as pool:
            list(pool.map(lambda i: self._import(i, archives), range(self.count)))
        for i in range(self.count):
            n = self.paths(i)
            name = f"kubelet-{n.name}"
            if not procs.alive(name, self.state):
                make_cgroup(self.cgroup_root(i))  # the kubelet wants its cgroupRoot to exist
                cfg = n.root / "kubelet-config.json"
                cfg.write_text(json.dumps(kubelet_config(n, address=self.node_ip(i),
                                                         port=ports[f"{n.name}-kubelet"],
                                                         healthz_port=ports[f"{n.name}-healthz"],
                                                         client_ca=kubeconfig_for["ca"],
                                                         cgroup_root=self.cgroup_root(i))))
                procs.start(name, [*self._nsenter(i), str(kubelet), f"--config={cfg}",
                                   f"--kubeconfig={kubeconfig_for[n.name]}", f"--root-dir={n.root / 'kubelet'}",
                                   f"--cert-dir={n.root / 'certs'}", f"--hostname-override={n.name}",
                                   # Refused as a loopback address, so the kubelet reports no address and
                                   # the cluster writes the InternalIP itself (cluster.py).
                                   f"--node-ip={self.node_ip(i)}", f"--node-labels={node_labels(i)}", "--v=1"],
                            self.state, exe=str(kubelet))

    def _import(self, index: int, archives: list[Path]) -> None:
        """Import into node `index`'s containerd the archives it has not imported yet."""
        marker = self.paths(index).root / "containerd" / "imported"
        done = set(marker.read_text().split()) if marker.exists() else set()
        for a in archives:
            if a.name in done:
                continue
            out = self._ctr(index, "images", "import", str(a)).stdout
            # The CRI looks images up by their normalized names (docker.io/...).
            for ref in (line.split()[1] for line in out.splitlines() if line.startswith("unpacking ")):
                self._ctr(index, "images", "tag", "--force", ref, f"docker.io/{ref}")
            done.add(a.name)
            marker.write_text("\n".join(sorted(done)))

    def stop_kubelet(self, index: int) -> bool:
        """Stop node `index`'s kubelet only (a node fault): its pods keep running, its heartbeats stop."""
        return procs.stop(f"kubelet-node{index}", self.state)

    def down(self) -> list[str]:
        """Stop every kubelet, kill and remove every container, stop containerd, remove container cgroups."""
        stopped = []
        for i in range(self.count):
            n = self.paths(i)
            if procs.stop(f"kubelet-{n.name}", self.state):
                stopped.append(f"kubelet-{n.name}")
            if procs.alive(f"containerd-{n.name}", self.state):
                tasks = self._ctr(i, "tasks", "ls", "-q", check=False).stdout.split()
                for t in tasks:
                    self._ctr(i, "tasks", "kill", "-s", "SIGKILL", t, check=False)
                for t in tasks:
                    self._ctr(i, "tasks", "delete", "--force", t, check=False)
                for c in self._ctr(i, "containers", "ls", "-q", check=False).stdout.split():
                    self._ctr(i, "containers", "rm", c, check=False)
                procs.stop(f"containerd-{n.name}", self.state, grace=15)
                stopped.append(f"containerd-{n.name}")
        remove_container_cgroups(self.state.parent)
        return stopped


def cgroup_prefix(state: Path) -> str:
    """The name prefix of the cgroup roots of the cluster at `state` (its nodes' roots add `node<i>`)."""
    return f"virtmigrate-{hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:10]}-"


def make_cgroup(root: str) -> None:
    """Create cgroup `root` (a top-level cgroupfs path) in every hierarchy; a new cpuset gets its parent's
    CPUs and memory nodes (it starts with none, and its children could not run). An OSError propagates:
    the kubelet would refuse a cgroupRoot missing from a hierarchy anyway, less clearly."""
    for hierarchy in CGROUP_ROOT.iterdir():
        d = hierarchy / root.strip("/")
        if not hierarchy.is_dir() or hierarchy.is_symlink() or d.is_dir():
            continue
        d.mkdir()
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (d / f).exists():
                (d / f).write_text((hierarchy / f).read_text())


def pod_cgroups(state: Path) -> list[Path]:
    """The cgroup roots of the kubelets of the cluster at `state`, in every hierarchy (with the QoS and
    pod cgroups the kubelets made and the container cgroups runc made under them)."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for hierarchy in CGROUP_ROOT.iterdir():
            if hierarchy.is_dir() and not hierarchy.is_symlink():
                found += sorted(hierarchy.glob(f"{cgroup_prefix(state)}node*"))
    return found


def remove_container_cgroups(state: Path) -> None:
    """rmdir the (empty, once their processes are dead) cgroups of the cluster at `state`, deepest first."""
    for d in pod_cgroups(state):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()


def node_kubeconfigs(pki_dir: Path, server: str, state: Path, count: int) -> dict[str, Path]:
    """A client certificate and kubeconfig per node (CN system:node:<name>, O system:nodes); key "ca" is the
    cluster CA, for the kubelets' client-certificate authentication."""
    from virtmigrate.local.controlplane import _kubeconfig

    out: dict[str, Path] = {"ca": pki_dir / "ca.crt"}
    for i in range(count):
        name = f"node{i}"
        crt, key = pki.ensure_cert(pki_dir, f"kubelet-{name}", f"/O=system:nodes/CN=system:node:{name}")
        kc = state / "kubelet" / f"{name}.kubeconfig"
        kc.parent.mkdir(parents=True, exist_ok=True)
        kc.write_text(_kubeconfig(server, pki_dir / "ca.crt", crt, key, f"system:node:{name}"))
        out[name] = kc
    return out


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not up after {timeout:.0f}s")


def mode() -> str:
    """How the local cluster runs pods: "runner" (the node runner, default) or "kubelet" (real kubelets)."""
    return os.environ.get("VIRTMIGRATE_NODES", "runner")
