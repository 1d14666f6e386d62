"""Labels and annotations that tie our pods to their VM and Migration, for names of any length.

Label values are at most 63 characters, object names up to 253: a label carries the name when it fits,
else its first 57 characters and a hash (`label_value`); the full names are in annotations, which have
no such limit, and every reader takes them from there (`pod_vm_name`, `pod_migration_name`).
Used by: the pod builders (controller/vm/pods.py, controller/migration/pods.py), the controllers'
handlers and indexes, and the local node runner's views.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from virtmigrate.api.constants import LABEL_MIGRATION, LABEL_PREFIX, LABEL_ROLE, LABEL_VM

if TYPE_CHECKING:
    from virtmigrate.api.migration import Migration
    from virtmigrate.api.vm import VM

LABEL_VALUE_MAX = 63
ANNOTATION_VM = f"{LABEL_PREFIX}/vm-name"                # the VM's full name, on launcher and agent pods
ANNOTATION_MIGRATION = f"{LABEL_PREFIX}/migration-name"  # the Migration's full name, on its pods


def label_value(name: str) -> str:
    """`name` when it is a valid label value's length, else a stable shortened form (pure)."""
    if len(name) <= LABEL_VALUE_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:5]
    return f"{name[: LABEL_VALUE_MAX - 6].rstrip('-._')}-{digest}"


def child_labels(vm: VM, migration: Migration | None, role: str) -> dict[str, str]:
    labels = {LABEL_VM: label_value(vm.name), LABEL_ROLE: role}
    if migration is not None:
        labels[LABEL_MIGRATION] = label_value(migration.name)
    return labels


def child_annotations(vm: VM, migration: Migration | None) -> dict[str, str]:
    out = {ANNOTATION_VM: vm.name}
    if migration is not None:
        out[ANNOTATION_MIGRATION] = migration.name
    return out


def _named(pod: Mapping[str, Any], annotation: str, label: str) -> str:
    meta = pod.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(annotation) or (meta.get("labels") or {}).get(label) or "")


def pod_vm_name(pod: Mapping[str, Any]) -> str:
    """The VM a pod of ours belongs to ("" for other pods)."""
    return _named(pod, ANNOTATION_VM, LABEL_VM)


def pod_migration_name(pod: Mapping[str, Any]) -> str:
    """The Migration a pod of ours serves ("" for a VM's own launcher pod)."""
    return _named(pod, ANNOTATION_MIGRATION, LABEL_MIGRATION)
