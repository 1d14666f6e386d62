"""Where a migration's target may go: the scheduler module's merge and explanation, for our views.

Fed by: migration/execute.py (VM and Migration views, the source node, the controller configuration,
the Node and Pod caches). Consumed by: migration/execute.py (the target pod's constraints, the
contradiction message that fails a Migration, the per-node explanation of an unschedulable target).
This is the only module of the controller that calls virtmigrate.scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from virtmigrate.api.migration import Migration
from virtmigrate.api.vm import VM
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.vm.pods import MEMORY_OVERHEAD_BYTES
from virtmigrate.scheduler import Contradiction, Merged, explain_infeasible, merge_constraints

__all__ = ["Contradiction", "Merged", "explain", "merge"]

MAX_NODES_LISTED = 10  # a condition message stays readable on big clusters; the summary counts them all


def merge(vm: VM, migration: Migration, *, source_node: str, config: ControllerConfig) -> Merged | Contradiction:
    """The target pod's node constraints, or the contradiction naming every conflicting key."""
    return merge_constraints(vm.spec.node_selector, vm.spec.required_terms, vm_tolerations=vm.spec.tolerations,
                             migration_node_selector=migration.spec.node_selector,
                             source_node=source_node or "unknown-source",
                             default_selector=config.default_node_selector, vm_name=vm.name,
                             migration_name=migration.name)


def explain(nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], merged: Merged, vm: VM) -> str:
    """kube-scheduler's style summary plus the reasons of each node, for a condition message."""
    request = vm.spec.memory_bytes + MEMORY_OVERHEAD_BYTES
    f = explain_infeasible(nodes, pods, merged=merged, memory_request_bytes=request)
    reasons = [(n, r) for n, r in f.reasons_by_node().items() if r]
    per_node = "; ".join(f"{n}: {', '.join(r)}" for n, r in reasons[:MAX_NODES_LISTED])
    if len(reasons) > MAX_NODES_LISTED:
        per_node += f"; ... and {len(reasons) - MAX_NODES_LISTED} more nodes"
    return f"{f.summary} {per_node}".strip()
