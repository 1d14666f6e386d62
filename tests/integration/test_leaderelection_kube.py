"""Two election candidates in separate processes on the real API server: exactly one leads;
kill -9 the leader and the other leads within the lease duration (plus the follower's
observation lag of at most two retry periods); SIGTERM releases the lease at once."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, Cluster
from virtmigrate.kube import LEASES, KubeClient

pytestmark = pytest.mark.integration

LEASE_DURATION, RETRY = 15.0, 2.0


class Proc:
    def __init__(self, cluster: Cluster, namespace: str, identity: str) -> None:
        self.identity = identity
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "tests.leaderelection_candidate", str(cluster.kubeconfig), namespace,
             "ctrl-lease", identity], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[str] = []

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put((time.monotonic(), line.strip()))

    def wait_line(self, text: str, timeout: float) -> float | None:
        """Monotonic time at which `text` was printed, or None after `timeout`."""
        end = time.monotonic() + timeout
        while True:
            for s in self.seen:
                if s.split("@")[0] == text:
                    return float(s.split("@")[1])
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            self.seen.append(f"{line}@{t}")

    def kill(self, sig: int) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)
        self.p.wait(20)


@pytest.fixture
def procs(cluster: Cluster, namespace: str) -> Iterator[list[Proc]]:
    ps: list[Proc] = []
    yield ps
    for p in ps:
        p.kill(signal.SIGKILL)


def holder(kube: KubeClient, namespace: str) -> str:
    return str(kube.get(LEASES, "ctrl-lease", namespace)["spec"].get("holderIdentity") or "")


def _start_both(cluster: Cluster, namespace: str, procs: list[Proc]) -> tuple[Proc, Proc]:
    procs += [Proc(cluster, namespace, "cand-a"), Proc(cluster, namespace, "cand-b")]
    first = None
    end = time.monotonic() + 30
    while first is None and time.monotonic() < end:
        for p in procs:
            if p.wait_line(f"LEADING {p.identity}", 0.2) is not None:
                first = p
    assert first is not None, "nobody became leader"
    other = procs[1] if first is procs[0] else procs[0]
    return first, other


def test_exactly_one_leads_and_the_other_takes_over_after_kill_9(
        cluster: Cluster, namespace: str, kube: KubeClient, procs: list[Proc]) -> None:
    leader, follower = _start_both(cluster, namespace, procs)
    assert holder(kube, namespace) == leader.identity
    assert follower.wait_line(f"LEADING {follower.identity}", 2 * LEASE_DURATION) is None, \
        "two leaders at once"
    killed_at = time.monotonic()
    leader.kill(signal.SIGKILL)
    took_over = follower.wait_line(f"LEADING {follower.identity}", 3 * LEASE_DURATION)
    assert took_over is not None, "the follower never took over"
    delay = took_over - killed_at
    print(f"take-over {delay:.1f}s after kill -9 (lease {LEASE_DURATION:.0f}s)")
    assert delay <= LEASE_DURATION + 2 * RETRY * 1.2 + 1.0
    assert holder(kube, namespace) == follower.identity
    lease = kube.get(LEASES, "ctrl-lease", namespace)
    assert lease["spec"]["leaseTransitions"] >= 1


def test_graceful_shutdown_releases_the_lease(
        cluster: Cluster, namespace: str, kube: KubeClient, procs: list[Proc]) -> None:
    leader, follower = _start_both(cluster, namespace, procs)
    stopped_at = time.monotonic()
    leader.kill(signal.SIGTERM)
    assert leader.p.returncode == 0
    assert leader.wait_line(f"STOPPED {leader.identity}", 5) is not None
    took_over = follower.wait_line(f"LEADING {follower.identity}", LEASE_DURATION)
    assert took_over is not None, "a released lease must be taken well before it would expire"
    print(f"take-over {took_over - stopped_at:.1f}s after SIGTERM")
    assert holder(kube, namespace) == follower.identity
