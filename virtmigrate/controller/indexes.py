"""The informer indexes both controllers share, and the one key function for their objects.

Fed by: the shared informer factory (an index is registered once per informer, whichever controller asks
first). Consumed by: migration/observe.py and vm/controller.py, through `Store.by_index`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from virtmigrate.api.names import pod_migration_name, pod_vm_name

JSON = dict[str, Any]

MIGRATION_VM_INDEX = "migration-vm"   # Migrations by `namespace/spec.selector.name`
POD_VM_INDEX = "pod-vm"               # Pods by `namespace/<label virtmigrate.kubevirt.io/vm>`
POD_MIGRATION_INDEX = "pod-migration"  # Pods by `namespace/<the Migration they serve>`


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name` of a namespaced object (the work queues' keys)."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def index_migration_by_vm(obj: JSON) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace", "")
    name = ((obj.get("spec") or {}).get("selector") or {}).get("name")
    return [f"{ns}/{name}"] if name else []


def index_pod_by_vm(obj: JSON) -> list[str]:
    name = pod_vm_name(obj)
    return [f"{(obj.get('metadata') or {}).get('namespace', '')}/{name}"] if name else []


def index_pod_by_migration(obj: JSON) -> list[str]:
    name = pod_migration_name(obj)
    return [f"{(obj.get('metadata') or {}).get('namespace', '')}/{name}"] if name else []
