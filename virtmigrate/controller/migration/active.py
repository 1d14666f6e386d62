"""The index of active Migrations: what admission, capacity and per-VM checks look at, instead of every
Migration ever made.

A Migration is *active* until it is terminal (Succeeded/Failed) **and** carries no finalizer: while our
finalizer is on, cleanup still runs and the VM's next Migration waits for it. Finished history (terminal,
no finalizer) is filed under no value, so a cache holding 10,000 finished Migrations costs the controller
nothing per admission.

Fed by: the Migration informer's store, which keeps this index as it keeps every other (client-go's
`cache.Indexers`): it is rebuilt from the objects themselves on every list, so after a restart a fresh
informer over the same Migrations gives the same counts — there is no memory to lose.
Consumed by: migration/observe.py (capacity candidates, the cluster-wide count behind `limits_can_bind`,
a VM's competitors) and migration/controller.py (which Migrations a VM's or pod's event wakes).

Index values (one index, three families of values):
    ACTIVE_ALL             every active Migration of the cache's scope (the served namespaces)
    node_value(node)       active Migrations leaving `node` (status.sourceNode, set on admission)
    vm_value(ns, vm)       active Migrations of VM `ns/vm`
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]

ACTIVE_INDEX = "migration-active"
ACTIVE_ALL = "all"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def node_value(node: str) -> str:
    return f"node/{node}"


def vm_value(namespace: str, vm: str) -> str:
    return f"vm/{namespace}/{vm}"


def is_active(obj: Mapping[str, Any]) -> bool:
    """Not finished history: not terminal, or terminal with a finalizer still to be released."""
    phase = (obj.get("status") or {}).get("phase")
    return phase not in TERMINAL_PHASES or bool((obj.get("metadata") or {}).get("finalizers"))


def index_active_migration(obj: JSON) -> list[str]:
    """The index function: the values an active Migration is filed under; [] for finished history."""
    if not is_active(obj):
        return []
    meta = obj.get("metadata") or {}
    values = [ACTIVE_ALL]
    vm = ((obj.get("spec") or {}).get("selector") or {}).get("name")
    if vm:
        values.append(vm_value(str(meta.get("namespace", "")), str(vm)))
    node = (obj.get("status") or {}).get("sourceNode")
    if node:
        values.append(node_value(str(node)))
    return values


ACTIVE_INDEXERS = {ACTIVE_INDEX: index_active_migration}
