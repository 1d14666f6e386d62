"""A leader-election candidate process for tests/integration/test_leaderelection_kube.py.

    python -m tests.leaderelection_candidate KUBECONFIG NAMESPACE LEASE IDENTITY

Prints `LEADING <identity>` when it starts leading and `STOPPED <identity>` when it stops;
SIGTERM is a graceful shutdown (the lease is released).
"""

from __future__ import annotations

import signal
import sys
import threading

from virtmigrate.controller.leaderelection import KubeLeaseLock, LeaderElectionConfig, LeaderElector
from virtmigrate.kube import KubeClient


def main(argv: list[str]) -> int:
    kubeconfig, namespace, lease, identity = argv
    client = KubeClient.from_kubeconfig(kubeconfig)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def lead(_: threading.Event) -> None:
        print(f"LEADING {identity}", flush=True)

    def stopped() -> None:
        print(f"STOPPED {identity}", flush=True)

    elector = LeaderElector(LeaderElectionConfig(
        lock=KubeLeaseLock(client, namespace, lease, identity),
        on_started_leading=lead, on_stopped_leading=stopped, name=lease))
    print(f"CANDIDATE {identity}", flush=True)
    elector.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
