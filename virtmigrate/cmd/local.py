"""`virtmigrate cluster up|down|status`: the embedded local cluster on this machine.

`up [--nodes 3]` starts the control plane, one libvirt host per node, the node runner and the
controller (virtmigrate.local.cluster), waits until every node is Ready and prints
`export KUBECONFIG=... KUBECACHEDIR=...` on stdout (progress goes to stderr), so
`eval "$(virtmigrate cluster up)"` works.
`down` stops everything and checks that no process, mount or listener of the cluster is left (exit 1
and a list if something is). `status` prints what runs (exit 0 when all of it does, 3 otherwise).
`serial VM [-n NS] [--tail N]` prints the last lines of a VM's serial console on the node it runs on
(the test guest's heartbeat), read from that node's libvirt log folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from virtmigrate.errors import VirtMigrateError
from virtmigrate.kube.resources import VMS
from virtmigrate.local.cluster import LocalCluster, cluster_namespaces, cluster_ports, leftovers
from virtmigrate.local.controlplane import default_state_dir


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="virtmigrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", type=Path, default=None,
                    help="where the cluster keeps its state (default $VIRTMIGRATE_STATE or "
                         "~/.local/state/virtmigrate)")
    sub = ap.add_subparsers(dest="command", required=True)
    cl = sub.add_parser("cluster", help="the local cluster: control plane, nodes, node runner, controller")
    cl.add_argument("action", choices=["up", "down", "status", "serial"])
    cl.add_argument("vm", nargs="?", help="the VM for `serial`")
    cl.add_argument("-n", "--namespace", default="default", help="the VM's namespace for `serial`")
    cl.add_argument("--tail", type=int, default=5, help="lines for `serial`")
    cl.add_argument("--nodes", type=int, default=None, help="number of nodes for `up` (default 3)")
    cl.add_argument("--no-controller", action="store_true",
                    help="`up` without starting virtmigrate-controller (run your own)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state = args.state_dir or default_state_dir()
    cluster = LocalCluster(state, nodes=args.nodes, controller=not args.no_controller)
    try:
        if args.action == "up":
            if args.nodes is not None and args.nodes < 1:
                print("--nodes: must be at least 1", file=sys.stderr)
                return 2
            rep = cluster.up()
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in rep.seconds.items())
            print(f"local cluster ready: {cluster.nodes} nodes, API at {cluster.control_plane.server}, "
                  f"Prometheus at {cluster.prometheus.url} ({rep.total:.1f}s: {stages})", file=sys.stderr)
            # kubectl caches discovery per host:port in ~/.kube/cache: an earlier cluster on the same port
            # would answer for this one (`kubectl explain` missing our CRDs). Each cluster gets its own cache.
            print(f"export KUBECONFIG={cluster.kubeconfig} KUBECACHEDIR={cluster.kubeconfig.parent / 'kubectl-cache'}")
            return 0
        if args.action == "down":
            ports = cluster_ports(cluster) if state.exists() else []
            namespaces = cluster_namespaces(cluster) if state.exists() else []
            since, kubelet = time.time(), cluster.node_mode == "kubelet"
            stopped = cluster.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
            left = leftovers(state, ports=ports, namespaces=namespaces, since=since, kubelet=kubelet)
            for item in left:
                print(f"left over: {item}", file=sys.stderr)
            return 1 if left else 0
        if args.action == "serial":
            return _serial(cluster, args.vm, args.namespace, args.tail)
    except (VirtMigrateError, TimeoutError, RuntimeError, FileNotFoundError) as e:
        print(f"virtmigrate cluster {args.action}: {e}", file=sys.stderr)
        return 1
    status = cluster.status()
    print(json.dumps(status, indent=2))
    nodes_run = bool(status["node_runner"]) or status["node_mode"] == "kubelet"
    ok = bool(status["control_plane"]) and nodes_run and all(
        dict(status["libvirt_hosts"]).values())  # type: ignore[call-overload]
    return 0 if ok else 3


def _serial(cluster: LocalCluster, vm: str | None, namespace: str, tail: int) -> int:
    if not vm:
        print("serial: name the VM", file=sys.stderr)
        return 2
    status = cluster.client().get(VMS, vm, namespace).get("status") or {}
    node = str(status.get("node") or "")
    if not node.startswith("node"):
        print(f"VM {namespace}/{vm} runs on no node (phase {status.get('phase') or 'unknown'})", file=sys.stderr)
        return 1
    host = cluster.hosts.host(int(node.removeprefix("node")))
    path = host.qemu_log_dir / f"{namespace}_{vm}-serial.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    print(f"# {namespace}/{vm} on {node}: {path}", file=sys.stderr)
    for line in lines[-tail:]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
