"""Where each VM of a node being drained could go: the scheduler module's verdicts, one VM at a time and together.

Fed by: the evacuation controller (VMs from its cache, every Node, the pods it sees) and `kubectl virtmigrate`
(explain, drain-plan, migrate --dry-run), so both say the same thing. Consumed by: evacuation/decide.py, which
creates Migrations only for VMs with a candidate and tells on the Node which VMs have none and why.
Pure: no I/O; inputs are read, never changed.

For one VM the constraints are those of a Migration without a nodeSelector (virtmigrate.scheduler.merge:
the VM's selector, affinity and tolerations, the cluster default selector, never the source node); every
node is judged as kube-scheduler would (cordoned, taints, selectors, affinity, free cpu and memory).
Together: VMs are placed largest first, each on its candidate with the most memory left after the ones
placed before it; a VM with candidates but no room left is reported (`fits_together` False) — the greedy
packing can be pessimistic, so it warns rather than blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.api.vm import VM
from virtmigrate.controller.vm.pods import CPU_REQUEST, MEMORY_OVERHEAD_BYTES
from virtmigrate.scheduler import Contradiction, Feasibility, Merged, explain_infeasible, merge_constraints
from virtmigrate.scheduler.resources import allocatable_of, parse_quantity, pod_requests

CPU_REQUEST_MILLIS = int(parse_quantity(CPU_REQUEST) * 1000)


@dataclass(frozen=True)
class Targets:
    """The verdict for one VM leaving `source`."""

    vm: str                                   # namespace/name
    source: str
    candidates: tuple[str, ...] = ()          # nodes that could take it alone, by name
    reasons: dict[str, list[str]] = field(default_factory=dict)  # node -> why not ([] = feasible)
    summary: str = ""                         # kube-scheduler's one-line summary, or the contradiction
    contradiction: str = ""                   # the VM's own constraints exclude every node but the source
    planned: str = ""                         # where the packing puts it ("" = no room, or no candidate)
    fits_together: bool = True                # False: candidates exist but are full after the others

    @property
    def movable(self) -> bool:
        return bool(self.candidates)

    def why_not(self) -> str:
        """One sentence on why the VM cannot move (empty when it can)."""
        if self.contradiction:
            return self.contradiction
        if not self.candidates:
            per_node = "; ".join(f"{n}: {', '.join(r)}" for n, r in self.reasons.items() if r)
            return f"{self.summary} {per_node}".strip()
        if not self.fits_together:
            return (f"no room left on {', '.join(self.candidates)} once the other VMs of {self.source} "
                    "have moved there")
        return ""


def vm_request_bytes(vm: VM) -> int:
    return vm.spec.memory_bytes + MEMORY_OVERHEAD_BYTES


def targets_for(vm: VM, source: str, nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], *,
                default_selector: Mapping[str, str] | None = None,
                migration_node_selector: Mapping[str, str] | None = None) -> Targets:
    """Every node's verdict for `vm` leaving `source` (with an optional Migration nodeSelector)."""
    merged = merge_constraints(vm.spec.node_selector, vm.spec.required_terms, vm_tolerations=vm.spec.tolerations,
                               migration_node_selector=migration_node_selector, source_node=source or "unknown",
                               default_selector=default_selector, vm_name=vm.name)
    if isinstance(merged, Contradiction):
        sides = "; ".join(c.vm_side or c.migration_side for c in merged.conflicts)
        text = (f"its constraints allow no node but {source}: {sides}" if not migration_node_selector
                else merged.message)
        # Each node's own reasons still help ("which label is wrong where"): judge the constraints as written.
        asked = Merged(node_selector={**(default_selector or {}), **vm.spec.node_selector,
                                      **(migration_node_selector or {})},
                       required_terms=[dict(t) for t in vm.spec.required_terms],
                       tolerations=[dict(t) for t in vm.spec.tolerations], source_node=source or "unknown")
        each = explain_infeasible(nodes, pods, merged=asked, memory_request_bytes=vm_request_bytes(vm),
                                  cpu_request_millis=CPU_REQUEST_MILLIS, source_node=source)
        reasons = {n: r or [text] for n, r in each.reasons_by_node().items()}
        return Targets(vm.key, source, summary=text, contradiction=text, reasons=reasons)
    f: Feasibility = explain_infeasible(nodes, pods, merged=merged, memory_request_bytes=vm_request_bytes(vm),
                                        cpu_request_millis=CPU_REQUEST_MILLIS, source_node=source)
    return Targets(vm.key, source, candidates=f.feasible_nodes, reasons=f.reasons_by_node(), summary=f.summary)


def plan_node(vms: Sequence[VM], source: str, nodes: Sequence[Mapping[str, Any]],
              pods: Sequence[Mapping[str, Any]], *, default_selector: Mapping[str, str] | None = None
              ) -> dict[str, Targets]:
    """The verdict of every VM in `vms` (all on `source`), with the packing of them all together."""
    alone = {vm.key: targets_for(vm, source, nodes, pods, default_selector=default_selector) for vm in vms}
    free = _free_memory(nodes, pods)
    out: dict[str, Targets] = {}
    for vm in sorted(vms, key=lambda v: (-vm_request_bytes(v), v.key)):
        t = alone[vm.key]
        if not t.candidates:
            out[vm.key] = t
            continue
        best = max(t.candidates, key=lambda n: (free.get(n, 0), n))
        need = vm_request_bytes(vm)
        if free.get(best, 0) < need:
            out[vm.key] = Targets(**{**vars(t), "fits_together": False})
            continue
        free[best] = free.get(best, 0) - need
        out[vm.key] = Targets(**{**vars(t), "planned": best})
    return {vm.key: out[vm.key] for vm in vms}


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def _free_memory(nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    used: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            used[node] = used.get(node, 0) + pod_requests(pod).memory_bytes
    return {_name(n): allocatable_of(n)[0].memory_bytes - used.get(_name(n), 0) for n in nodes}
