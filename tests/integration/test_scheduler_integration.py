"""The real kube-scheduler agrees with virtmigrate.scheduler.

A pod built from `merge_constraints` output is bound by the real kube-scheduler to the matching,
non-source Node; a pod no node can take stays Pending with PodScheduled=False, and the reasons in
its condition message (counted per reason, over every node of the cluster) are the ones
`explain_infeasible` gives.

Nodes are Node objects only (no kubelet), named `sched-<random>-<x>`, so no node runner ever runs
the pods (`sleep 1`). Other tests may add nodes to the same cluster: our pods carry a nodeSelector
with a label value unique to the test, so only our nodes can take them, and the comparison covers
whatever other nodes exist at the time.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from virtmigrate.errors import NotFound
from virtmigrate.kube import KubeClient
from virtmigrate.kube.resources import NODES, PODS
from virtmigrate.scheduler import Feasibility, Merged, ReasonKind, explain_infeasible, merge_constraints

pytestmark = pytest.mark.integration

POOL_KEY = "sched-test.virtmigrate.io/pool"
GI = 2**30

# kube-scheduler v1.37's filter reasons, and the filter order it stops at for each node.
SCHEDULER_REASON = {
    ReasonKind.UNSCHEDULABLE: (1, "node(s) were unschedulable"),
    ReasonKind.TAINT: (2, "node(s) had untolerated taint(s)"),
    ReasonKind.SOURCE: (3, "node(s) didn't match Pod's node affinity/selector"),
    ReasonKind.NODE_SELECTOR: (3, "node(s) didn't match Pod's node affinity/selector"),
    ReasonKind.NODE_AFFINITY: (3, "node(s) didn't match Pod's node affinity/selector"),
    ReasonKind.TOO_MANY_PODS: (4, "Too many pods"),
    ReasonKind.INSUFFICIENT_CPU: (4, "Insufficient cpu"),
    ReasonKind.INSUFFICIENT_MEMORY: (4, "Insufficient memory"),
}


class Nodes:
    """Creates Ready, untainted Node objects with unique names, and deletes them afterwards."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.prefix = f"sched-{uuid.uuid4().hex[:6]}"
        self.pool = self.prefix
        self.names: list[str] = []

    def create(self, suffix: str, *, labels: dict[str, str] | None = None, memory: str = "8Gi",
               taints: list[dict[str, str]] | None = None, unschedulable: bool = False,
               in_pool: bool = True) -> str:
        name = f"{self.prefix}-{suffix}"
        all_labels = {"kubernetes.io/hostname": name, **({POOL_KEY: self.pool} if in_pool else {}),
                      **(labels or {})}
        resources = {"memory": memory, "cpu": "4", "pods": "110"}
        self.kube.create(NODES, {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": all_labels},
            "status": {"allocatable": resources, "capacity": resources, "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node"}]}})
        self.names.append(name)
        # The TaintNodesByCondition admission plugin taints every new node not-ready, and no
        # node lifecycle controller runs here to lift it: set the taints we want explicitly.
        node = self.kube.get(NODES, name)
        assert {t["key"] for t in node["spec"].get("taints", [])} <= {"node.kubernetes.io/not-ready"}
        assert node["status"]["allocatable"] == resources
        spec: dict[str, Any] = {"taints": taints or None, "unschedulable": unschedulable or None}
        self.kube.patch(NODES, name, {"spec": spec})
        node = self.kube.get(NODES, name)
        assert node["spec"].get("taints", []) == (taints or [])
        return name

    def delete_all(self) -> None:
        for name in self.names:
            with contextlib.suppress(NotFound):
                self.kube.delete(NODES, name)


@pytest.fixture
def nodes(kube: KubeClient) -> Iterator[Nodes]:
    made = Nodes(kube)
    try:
        yield made
    finally:
        made.delete_all()


@pytest.fixture
def pods(kube: KubeClient, namespace: str) -> Iterator[list[str]]:
    """Names of pods created in `namespace`; deleted at once afterwards (no kubelet to confirm)."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(NotFound):
            kube.delete(PODS, name, namespace, grace_period_seconds=0)


def target_pod(name: str, merged: Merged, memory: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {**merged.pod_spec_fields(), "terminationGracePeriodSeconds": 0, "containers": [
                {"name": "target", "image": "virtmigrate/never-pulled:0", "command": ["sleep", "1"],
                 "resources": {"requests": {"memory": memory}}}]}}


def merge(source: str, pool: str, vm_zone: str = "a") -> Merged:
    merged = merge_constraints({"zone": vm_zone}, None, vm_tolerations=[], migration_node_selector={POOL_KEY: pool},
                               source_node=source, vm_name="testvm", migration_name="m1")
    assert isinstance(merged, Merged), merged
    return merged


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def test_scheduler_binds_merged_pod_to_matching_non_source_node(
        kube: KubeClient, namespace: str, nodes: Nodes, pods: list[str]) -> None:
    source = nodes.create("a", labels={"zone": "a"})
    target = nodes.create("b", labels={"zone": "a"})
    nodes.create("c", labels={"zone": "b"})
    merged = merge(source, nodes.pool)

    ours = explain_infeasible([kube.get(NODES, n) for n in nodes.names], [], merged=merged,
                              memory_request_bytes=GI)
    assert ours.feasible_nodes == (target,)

    for i in range(3):  # the source matches the VM's selector as well as the target: never pick it
        pods.append(f"target-{i}")
        kube.create(PODS, target_pod(pods[-1], merged, "1Gi"), namespace)
    for name in pods:
        bound = wait_for(f"pod {name} bound", lambda n=name: kube.get(PODS, n, namespace)["spec"].get("nodeName"))
        assert bound == target


def scheduler_histogram(message: str) -> tuple[int, Counter[str]]:
    """`0/7 nodes are available: 1 Insufficient memory, 6 node(s) ... . preemption: ...`."""
    match = re.match(r"0/(\d+) nodes are available: (.*?)\.(?: |$)", message)
    assert match, message
    counts: Counter[str] = Counter()
    for part in match.group(2).split(", "):
        n, reason = part.split(" ", 1)
        counts[reason] += int(n)
    return int(match.group(1)), counts


def our_histogram(feasibility: Feasibility) -> tuple[int, Counter[str]]:
    """Our per-node reasons, counted as kube-scheduler counts them: each node under the first
    failing filter, with every reason that filter gave."""
    counts: Counter[str] = Counter()
    for verdict in feasibility.nodes:
        if not verdict.reasons:
            continue
        first = min(SCHEDULER_REASON[r.kind][0] for r in verdict.reasons)
        for reason in {SCHEDULER_REASON[r.kind][1] for r in verdict.reasons if SCHEDULER_REASON[r.kind][0] == first}:
            counts[reason] += 1
    return len(feasibility.nodes), counts


def test_infeasible_pod_stays_pending_and_the_scheduler_agrees_with_our_reasons(
        kube: KubeClient, namespace: str, nodes: Nodes, pods: list[str]) -> None:
    source = nodes.create("a", labels={"zone": "a"})
    nodes.create("b", labels={"zone": "b"})
    nodes.create("c", labels={"zone": "a"}, taints=[{"key": "dedicated", "effect": "NoSchedule"}])
    small = nodes.create("d", labels={"zone": "a"}, memory="1536Mi")
    nodes.create("e", labels={"zone": "a"}, unschedulable=True)
    merged = merge(source, nodes.pool)

    # A pod already bound to the small node uses 1Gi of its 1.5Gi: the target's 1Gi does not fit.
    pods.append("resident")
    resident = target_pod("resident", merged, "1Gi")
    resident["spec"] = {"nodeName": small, "terminationGracePeriodSeconds": 0,
                        "containers": resident["spec"]["containers"]}
    kube.create(PODS, resident, namespace)

    mine = explain_infeasible([kube.get(NODES, n) for n in nodes.names],
                              kube.list_all(PODS, field_selector=f"spec.nodeName={small}"),
                              merged=merged, memory_request_bytes=GI)
    assert mine.feasible_nodes == ()
    assert {v.name.rsplit("-", 1)[1]: [r.summary for r in v.reasons] for v in mine.nodes} == {
        "a": ["is the source"],
        "b": ["didn't match node selector (zone)"],
        "c": ["had untolerated taint {dedicated: NoSchedule}"],
        "d": ["Insufficient memory"],
        "e": ["is cordoned"],
    }
    assert mine.summary == ("0/5 nodes are available: 1 is the source, 1 is cordoned, 1 had untolerated taint "
                            "{dedicated: NoSchedule}, 1 didn't match node selector (zone), 1 Insufficient memory.")

    def attempt(i: int) -> tuple[tuple[int, Counter[str]], tuple[int, Counter[str]]]:
        name = f"target-{i}"
        pods.append(name)
        kube.create(PODS, target_pod(name, merged, "1Gi"), namespace)

        def condition() -> dict[str, Any] | None:
            pod = kube.get(PODS, name, namespace)
            assert not pod["spec"].get("nodeName"), "the infeasible pod was bound"
            cond = next((c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"), None)
            return cond if cond and cond["status"] == "False" else None

        cond = wait_for(f"pod {name} to be marked unschedulable", condition)
        assert cond["reason"] == "Unschedulable"
        # Every node of the cluster, as the scheduler saw them: other tests may have made some.
        ours = our_histogram(explain_infeasible(kube.list_all(NODES), kube.list_all(PODS), merged=merged,
                                                memory_request_bytes=GI))
        return scheduler_histogram(cond["message"]), ours

    # Another test's node may come or go between the scheduler's look and ours: a new pod gets a
    # fresh look (the scheduler does not retry an unschedulable pod for a node that cannot help it).
    for i in range(5):
        theirs, ours = attempt(i)
        if theirs == ours:
            break
    assert theirs == ours
    print(f"kube-scheduler: {theirs}\nours: {ours}\nour summary for our nodes: {mine.summary}")
    time.sleep(1)  # nothing binds it later either
    assert all(not kube.get(PODS, n, namespace)["spec"].get("nodeName") for n in pods if n != "resident")
    assert ours[1][SCHEDULER_REASON[ReasonKind.INSUFFICIENT_MEMORY][1]] >= 1
    assert ours[1][SCHEDULER_REASON[ReasonKind.TAINT][1]] >= 1
    assert ours[1][SCHEDULER_REASON[ReasonKind.UNSCHEDULABLE][1]] >= 1
    assert ours[1][SCHEDULER_REASON[ReasonKind.SOURCE][1]] >= 2
