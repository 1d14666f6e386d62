"""A VM's PodDisruptionBudget: what makes `kubectl drain` wait for a live migration instead of stopping a guest.

Fed by: vm/controller.py with the VM (virtmigrate.api.VM, or None once it is gone) and the budgets carrying
its label (from an informer's cache). Consumed by: the same controller, which creates or deletes what the
pure `decide_pdb` says. No I/O.

One budget per VM whose spec.evictionStrategy migrates (LiveMigrate, LiveMigrateIfPossible) while it runs:
`maxUnavailable: 0` over every pod carrying the VM's label — its launcher, a migration's target launcher and
agent — so the Eviction API refuses (429) to evict any of them and `kubectl drain` keeps retrying until the
evacuation controller has moved the guest away; then the old launcher has exited (a terminal pod is always
evictable) and the drain completes. Why `maxUnavailable: 0` and not `minAvailable: 1`:

  * without a disruption controller (no kube-controller-manager), a budget's status is never computed: the
    API server refuses every eviction of a pod it covers (observedGeneration < generation, then
    disruptionsAllowed 0) — protection, whatever the spec says;
  * with one, `maxUnavailable: 0` always allows 0 disruptions (for pods whose owner has no scale subresource,
    like our VM, it fails safe to 0), while `minAvailable: 1` would allow evicting the source launcher in
    the middle of a migration, when the target launcher and the agent also count as healthy.

A LiveMigrateIfPossible VM that no node can take (`status.evacuation.released`) loses its budget, so the drain
evicts its launcher and the guest is shut down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from virtmigrate.api.constants import API_VERSION, LABEL_VM
from virtmigrate.api.names import ANNOTATION_VM, label_value
from virtmigrate.api.vm import VM

JSON = dict[str, Any]
NAME_MAX = 253


def pdb_name(vm_name: str) -> str:
    """`<vm>-launcher`: the budget's name (a DNS subdomain of at most 253 characters)."""
    return f"{vm_name[: NAME_MAX - 9].rstrip('-.')}-launcher"


def should_protect(vm: VM) -> bool:
    """Whether `vm`'s pods must be protected from eviction now."""
    if not vm.spec.running or not vm.spec.eviction_strategy.migrates:
        return False
    return not (vm.evacuation.released and vm.evacuation.node == vm.node)


def new_pdb(vm: VM) -> JSON:
    """The budget protecting every pod of `vm` (pure)."""
    meta: JSON = {"name": pdb_name(vm.name), "namespace": vm.namespace, "labels": {LABEL_VM: label_value(vm.name)},
                  "annotations": {ANNOTATION_VM: vm.name}}
    if vm.uid:
        meta["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": "VM", "name": vm.name, "uid": vm.uid,
                                    "controller": True, "blockOwnerDeletion": True}]
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {LABEL_VM: label_value(vm.name)}}}}


@dataclass(frozen=True)
class PdbPlan:
    create: JSON | None = None
    delete: tuple[tuple[str, str], ...] = ()  # (name, uid)


def decide_pdb(vm: VM | None, existing: Sequence[Mapping[str, Any]]) -> PdbPlan:
    """Create the budget `vm` needs and is missing; delete the ones it does not need (or of an older VM of
    the same name: their owner uid differs)."""
    want = vm is not None and should_protect(vm)
    keep = False
    delete: list[tuple[str, str]] = []
    for pdb in existing:
        meta = pdb.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        owners = [r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("kind") == "VM"]
        ours = vm is not None and meta.get("name") == pdb_name(vm.name) and (not owners or vm.uid in owners)
        if want and ours:
            keep = True
        else:
            delete.append((str(meta.get("name", "")), str(meta.get("uid", ""))))
    assert vm is not None or not want
    return PdbPlan(create=new_pdb(vm) if want and not keep and vm is not None else None, delete=tuple(delete))
