"""Why each Node can or cannot host a migration target, summarised as kube-scheduler does.

Fed by: the migration controller, with the Nodes and Pods from its informers, the `Merged`
constraints and the VM's memory request. Consumed by: the controller, which puts `summary` in the
Migration's status and a Warning event when the target pod stays Pending (or before creating it).
Pure: no I/O; inputs are read, never changed.

Every reason a node fails is listed in `NodeVerdict.reasons`; the summary counts each node once,
under its first reason, in kube-scheduler's filter order (NodeUnschedulable, TaintToleration,
NodeAffinity, NodeResourcesFit), except that "is the source" comes first because it is what a user
needs to read first:

    0/5 nodes are available: 1 is the source, 1 had untolerated taint {dedicated: NoSchedule},
    2 didn't match node selector (zone), 1 Insufficient memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from virtmigrate.scheduler.labels import HOSTNAME_LABEL, Requirement, term_requirements
from virtmigrate.scheduler.merge import Merged, source_exclusion
from virtmigrate.scheduler.resources import Requests, allocatable_of, format_bytes, pod_requests
from virtmigrate.scheduler.taints import UNSCHEDULABLE_TAINT, describe_taint, first_untolerated_taint, tolerated

_TERMINAL_PHASES = ("Succeeded", "Failed")  # kube-scheduler does not count these pods


class ReasonKind(IntEnum):
    """Why a node cannot host the target; the order is the summary's order."""

    SOURCE = 1  # the node the VM runs on now
    UNSCHEDULABLE = 2  # cordoned: spec.unschedulable
    TAINT = 3  # a NoSchedule/NoExecute taint the pod does not tolerate
    NODE_SELECTOR = 4  # a merged nodeSelector key is missing or different
    NODE_AFFINITY = 5  # no required affinity term matches
    TOO_MANY_PODS = 6  # allocatable pods reached
    INSUFFICIENT_CPU = 7  # allocatable cpu minus requests of bound pods < the request
    INSUFFICIENT_MEMORY = 8  # allocatable memory minus requests of bound pods < the request


@dataclass(frozen=True)
class Reason:
    """`summary` is the text counted in the summary; `detail` adds the node's numbers or labels."""

    kind: ReasonKind
    summary: str
    detail: str = ""


@dataclass(frozen=True)
class NodeVerdict:
    name: str
    reasons: tuple[Reason, ...]

    @property
    def feasible(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Feasibility:
    nodes: tuple[NodeVerdict, ...]

    @property
    def feasible_nodes(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.feasible)

    @property
    def summary(self) -> str:
        """`0/5 nodes are available: 1 is the source, 2 didn't match node selector (zone), ...`."""
        head = f"{len(self.feasible_nodes)}/{len(self.nodes)} nodes are available"
        firsts = [min(n.reasons, key=lambda r: r.kind) for n in self.nodes if n.reasons]
        if not firsts:
            return head + "."
        counts = Counter((r.kind, r.summary) for r in firsts)
        return head + ": " + ", ".join(f"{counts[k]} {k[1]}" for k in sorted(counts)) + "."

    def reasons_by_node(self) -> dict[str, list[str]]:
        """Node name -> every reason with its detail, for a condition message or a log line."""
        return {n.name: [f"{r.summary}: {r.detail}" if r.detail else r.summary for r in n.reasons]
                for n in self.nodes}


def explain_infeasible(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    merged: Merged,
    memory_request_bytes: int,
    cpu_request_millis: int = 0,
    source_node: str | None = None,
) -> Feasibility:
    """Judge every node for the target pod; nodes come out sorted by name.

    `pods` are all pods the scheduler knows (any namespace); those bound to a node and not
    terminal use its resources. `source_node` defaults to `merged.source_node`.
    """
    source = source_node or merged.source_node
    request = Requests(cpu_millis=cpu_request_millis, memory_bytes=memory_request_bytes)
    bound: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name and (pod.get("status") or {}).get("phase") not in _TERMINAL_PHASES:
            bound.setdefault(node_name, []).append(pod)
    exclusion = set(source_exclusion(source))  # the source gets its own reason, not an affinity one
    terms = [[r for r in term_requirements(t) if r not in exclusion] for t in merged.required_terms]
    verdicts = [_judge(n, bound.get(_name(n), []), merged, terms, request, source) for n in nodes]
    return Feasibility(tuple(sorted(verdicts, key=lambda v: v.name)))


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def _judge(node: Mapping[str, Any], bound: Sequence[Mapping[str, Any]], merged: Merged,
           terms: Sequence[Sequence[Requirement]], request: Requests, source: str) -> NodeVerdict:
    name = _name(node)
    labels: Mapping[str, str] = (node.get("metadata") or {}).get("labels") or {}
    spec = node.get("spec") or {}
    reasons: list[Reason] = []
    if name == source or labels.get(HOSTNAME_LABEL) == source:
        reasons.append(Reason(ReasonKind.SOURCE, "is the source"))
    if spec.get("unschedulable") and not tolerated(merged.tolerations, UNSCHEDULABLE_TAINT):
        reasons.append(Reason(ReasonKind.UNSCHEDULABLE, "is cordoned", "spec.unschedulable is true"))
    taint = first_untolerated_taint(spec.get("taints") or (), merged.tolerations)
    if taint is not None:
        reasons.append(Reason(ReasonKind.TAINT, f"had untolerated taint {describe_taint(taint)}"))
    wrong = sorted(k for k, v in merged.node_selector.items() if labels.get(k) != v)
    if wrong:
        reasons.append(Reason(ReasonKind.NODE_SELECTOR, f"didn't match node selector ({', '.join(wrong)})",
                              ", ".join(f"{k}={labels[k]}" if k in labels else f"no {k}" for k in wrong)))
    failing = _affinity_failures(terms, labels, name)
    if failing:
        reasons.append(Reason(ReasonKind.NODE_AFFINITY, f"didn't match node affinity ({', '.join(failing)})"))
    reasons += _resource_reasons(node, bound, request)
    return NodeVerdict(name, tuple(reasons))


def _affinity_failures(terms: Sequence[Sequence[Requirement]], labels: Mapping[str, str], name: str) -> list[str]:
    """Keys that fail, over all terms, when no term matches; [] when one does."""
    keys: set[str] = set()
    for reqs in terms:
        failed = [r.key for r in reqs if not r.valid or not r.matches(labels, name)]
        if not failed:
            return []
        keys.update(failed)
    return sorted(keys)


def _resource_reasons(node: Mapping[str, Any], bound: Sequence[Mapping[str, Any]],
                      request: Requests) -> list[Reason]:
    allocatable, max_pods = allocatable_of(node)
    used = Requests()
    for pod in bound:
        used += pod_requests(pod)
    out = []
    if len(bound) + 1 > max_pods:
        out.append(Reason(ReasonKind.TOO_MANY_PODS, "Too many pods", f"{len(bound)} of {max_pods} pods"))
    free_cpu = allocatable.cpu_millis - used.cpu_millis
    if request.cpu_millis > 0 and request.cpu_millis > free_cpu:
        out.append(Reason(ReasonKind.INSUFFICIENT_CPU, "Insufficient cpu",
                          f"requests {request.cpu_millis}m; {free_cpu}m of {allocatable.cpu_millis}m free"))
    free_mem = allocatable.memory_bytes - used.memory_bytes
    if request.memory_bytes > 0 and request.memory_bytes > free_mem:
        out.append(Reason(ReasonKind.INSUFFICIENT_MEMORY, "Insufficient memory",
                          f"requests {format_bytes(request.memory_bytes)}; {format_bytes(free_mem)} of "
                          f"{format_bytes(allocatable.memory_bytes)} free"))
    return out
