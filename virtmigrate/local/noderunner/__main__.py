"""`python -m virtmigrate.local.noderunner --state DIR --kubeconfig FILE --nodes N`: run every node's runner.

Started (and stopped, by pid file) by virtmigrate.local.cluster. Node i runs its pods in the mount
namespace of libvirt host i of `LibvirtHosts(DIR)`. SIGTERM stops every container, then the process.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

import structlog

from virtmigrate.clock import RealClock
from virtmigrate.kube.client import KubeClient
from virtmigrate.local.libvirthosts import LibvirtHosts
from virtmigrate.local.noderunner.node import NodeSpec
from virtmigrate.local.noderunner.podworker import RunnerDeps
from virtmigrate.local.noderunner.runner import NodeRunner


def _server_and_ca(kubeconfig: Path) -> tuple[str, Path]:
    cfg = json.loads(kubeconfig.read_text())  # the control plane writes its kubeconfigs as JSON
    cluster = cfg["clusters"][0]["cluster"]
    return str(cluster["server"]), Path(cluster["certificate-authority"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="virtmigrate-noderunner", description=__doc__)
    ap.add_argument("--state", type=Path, required=True, help="the local cluster's state directory")
    ap.add_argument("--kubeconfig", type=Path, required=True, help="the runner's (admin) kubeconfig")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--node-memory", type=int, default=4 << 30, help="allocatable memory per node (bytes)")
    ap.add_argument("--node-cpus", type=int, default=2)
    args = ap.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(20))

    server, ca = _server_and_ca(args.kubeconfig)
    client = KubeClient.from_kubeconfig(str(args.kubeconfig))
    hosts = LibvirtHosts(args.state, args.nodes)
    clock = RealClock()
    api = urlparse(server)
    stop = threading.Event()
    threads = []
    for h in hosts.hosts:
        deps = RunnerDeps(client=client, clock=clock, node=f"node{h.index}",
                          pods_dir=args.state / "pods", bin_dir=Path(sys.executable).parent,
                          ns_pid=lambda h=h: hosts.pid(h),  # type: ignore[misc]
                          server=server, ca_file=ca, api_host=api.hostname or "127.0.0.1",
                          api_port=api.port or 443)
        spec = NodeSpec(name=f"node{h.index}", index=h.index, libvirt_uri=h.uri,
                        migration_address=h.migration_uri, host_uuid=h.host_uuid,
                        memory_bytes=args.node_memory, cpus=args.node_cpus)
        t = threading.Thread(target=NodeRunner(deps, spec).run, args=(stop,), name=spec.name)
        t.start()
        threads.append(t)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
