"""explain_infeasible: which node cannot host the target, why, and the kube-scheduler-style summary."""

from __future__ import annotations

from typing import Any

import pytest

from virtmigrate.scheduler import Feasibility, Merged, ReasonKind, explain_infeasible, merge_constraints

GI = 2**30
SOURCE = "node0"


def node(name: str, *, labels: dict[str, str] | None = None, memory: str = "8Gi", pods: str = "110",
         cpu: str = "4", taints: list[dict[str, str]] | None = None, unschedulable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec, "status": {"allocatable": {"memory": memory, "cpu": cpu, "pods": pods}}}


def pod(node_name: str, memory: str = "1Gi", *, phase: str = "Running", cpu: str = "0") -> dict[str, Any]:
    return {"spec": {"nodeName": node_name,
                     "containers": [{"name": "c", "resources": {"requests": {"memory": memory, "cpu": cpu}}}]},
            "status": {"phase": phase}}


def merged(vm_sel: dict[str, str] | None = None, terms: list[dict[str, Any]] | None = None,
           tolerations: list[dict[str, Any]] | None = None, mig_sel: dict[str, str] | None = None) -> Merged:
    m = merge_constraints(vm_sel, terms, vm_tolerations=tolerations, migration_node_selector=mig_sel,
                          source_node=SOURCE)
    assert isinstance(m, Merged)
    return m


def explain(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None, *, m: Merged | None = None,
            memory: int = 2 * GI, cpu: int = 0) -> Feasibility:
    return explain_infeasible(nodes, pods or [], merged=m or merged(), memory_request_bytes=memory,
                              cpu_request_millis=cpu)


def test_issue_example_summary() -> None:
    nodes = [
        node(SOURCE, labels={"zone": "a"}),
        node("node1", labels={"zone": "b"}),
        node("node2"),
        node("node3", labels={"zone": "a"}, taints=[{"key": "dedicated", "effect": "NoSchedule"}]),
        node("node4", labels={"zone": "a"}, memory="3Gi"),
    ]
    got = explain(nodes, [pod("node4", "2Gi")], m=merged(mig_sel={"zone": "a"}))
    assert got.summary == ("0/5 nodes are available: 1 is the source, 1 had untolerated taint "
                           "{dedicated: NoSchedule}, 2 didn't match node selector (zone), 1 Insufficient memory.")
    assert got.feasible_nodes == ()
    assert got.reasons_by_node()["node4"] == ["Insufficient memory: requests 2Gi; 1Gi of 3Gi free"]
    assert got.reasons_by_node()["node2"] == ["didn't match node selector (zone): no zone"]


def one(n: dict[str, Any], pods: list[dict[str, Any]] | None = None, *, m: Merged | None = None,
        memory: int = 2 * GI, cpu: int = 0) -> list[tuple[ReasonKind, str]]:
    (verdict,) = explain([n], pods, m=m, memory=memory, cpu=cpu).nodes
    return [(r.kind, r.summary) for r in verdict.reasons]


@pytest.mark.parametrize(("n", "pods", "m", "memory", "cpu", "want"), [
    pytest.param(node("n1"), [], None, 2 * GI, 0, [], id="feasible"),
    pytest.param(node("n1", labels={"kubernetes.io/hostname": SOURCE}), [], None, 2 * GI, 0,
                 [(ReasonKind.SOURCE, "is the source")], id="source-by-hostname-label"),
    pytest.param(node("n1", unschedulable=True), [], None, 2 * GI, 0,
                 [(ReasonKind.UNSCHEDULABLE, "is cordoned")], id="cordoned"),
    pytest.param(node("n1", unschedulable=True), [], merged(tolerations=[
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]), 2 * GI, 0,
                 [], id="cordoned-but-tolerated"),
    pytest.param(node("n1", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}]), [], None, 2 * GI, 0,
                 [(ReasonKind.TAINT, "had untolerated taint {k=v: NoExecute}")], id="taint-NoExecute"),
    pytest.param(node("n1", taints=[{"key": "k", "effect": "PreferNoSchedule"}]), [], None, 2 * GI, 0,
                 [], id="taint-PreferNoSchedule-ignored"),
    pytest.param(node("n1", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]), [],
                 merged(tolerations=[{"key": "k", "operator": "Equal", "value": "v"}]), 2 * GI, 0,
                 [], id="taint-tolerated"),
    pytest.param(node("n1", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]), [],
                 merged(tolerations=[{"key": "k", "operator": "Equal", "value": "w"}]), 2 * GI, 0,
                 [(ReasonKind.TAINT, "had untolerated taint {k=v: NoSchedule}")], id="taint-other-value"),
    pytest.param(node("n1", labels={"gpu": "old"}), [],
                 merged(terms=[{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["new"]}]},
                               {"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["8"]}]}]),
                 2 * GI, 0,
                 [(ReasonKind.NODE_AFFINITY, "didn't match node affinity (cpus, gpu)")], id="affinity-keys"),
    pytest.param(node("n1", memory="4Gi"), [pod("n1", "1Gi"), pod("n1", "2Gi")], None, 2 * GI, 0,
                 [(ReasonKind.INSUFFICIENT_MEMORY, "Insufficient memory")], id="memory-used-by-bound-pods"),
    pytest.param(node("n1", memory="4Gi"), [pod("n1", "2Gi"), pod("n1", "2Gi", phase="Succeeded")], None,
                 2 * GI, 0, [], id="memory-terminal-pods-free"),
    pytest.param(node("n1", memory="4Gi"), [pod("n2", "3Gi")], None, 2 * GI, 0, [], id="memory-other-node"),
    pytest.param(node("n1", pods="1"), [pod("n1", "0")], None, 2 * GI, 0,
                 [(ReasonKind.TOO_MANY_PODS, "Too many pods")], id="too-many-pods"),
    pytest.param(node("n1", cpu="2"), [pod("n1", "0", cpu="1500m")], None, 2 * GI, 1000,
                 [(ReasonKind.INSUFFICIENT_CPU, "Insufficient cpu")], id="cpu"),
    pytest.param(node(SOURCE, memory="1Gi", taints=[{"key": "k", "effect": "NoSchedule"}]), [], None, 2 * GI, 0,
                 [(ReasonKind.SOURCE, "is the source"), (ReasonKind.TAINT, "had untolerated taint {k: NoSchedule}"),
                  (ReasonKind.INSUFFICIENT_MEMORY, "Insufficient memory")], id="every-reason-listed"),
])
def test_node_reasons(n: dict[str, Any], pods: list[dict[str, Any]], m: Merged | None, memory: int, cpu: int,
                      want: list[tuple[ReasonKind, str]]) -> None:
    assert one(n, pods, m=m, memory=memory, cpu=cpu) == want


def test_summary_counts_each_node_once_and_reports_available() -> None:
    nodes = [node("b"), node(SOURCE, memory="1Gi"), node("a", memory="1Gi")]
    got = explain(nodes)
    assert [v.name for v in got.nodes] == ["a", "b", SOURCE]
    assert got.feasible_nodes == ("b",)
    assert got.summary == "1/3 nodes are available: 1 is the source, 1 Insufficient memory."


def test_all_available() -> None:
    assert explain([node("a"), node("b")]).summary == "2/2 nodes are available."


def test_inputs_are_not_changed() -> None:
    import copy

    nodes = [node("a", taints=[{"key": "k", "effect": "NoSchedule"}]), node(SOURCE)]
    pods = [pod("a")]
    before = copy.deepcopy((nodes, pods))
    explain(nodes, pods)
    assert (nodes, pods) == before
