"""Migration history: keep the newest N finished Migrations of each VM, delete older ones.

Every node drain adds one Migration per VM; without a limit they accumulate forever (KubeVirt keeps 5 per
VM). A *finished* Migration is terminal (Succeeded/Failed), carries no finalizer (its cleanup is over) and
is not already being deleted; nothing else is ever pruned.

Fed by: migration/execute.py, after the sync of a finished Migration (so a Migration whose finalizer
was just released prunes its VM's history, and on a restart the initial list syncs every Migration
again): the VM's Migrations come from the informer cache, never from memory, so the decision survives
restarts and a replica that takes over decides the same.
Consumed by: `prune_history` (the executor), which deletes with a uid precondition (a newer Migration
that reuses a pruned name is never touched) and records one `MigrationsPruned` Event on the VM for what
this call deleted.

`--migration-history-limit` (VIRTMIGRATE_MIGRATION_HISTORY_LIMIT): N >= 0 keeps N; -1 keeps all.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from virtmigrate import errors
from virtmigrate.controller.events import NORMAL, EventRecorder
from virtmigrate.controller.migration.active import TERMINAL_PHASES
from virtmigrate.controller.migration.status import parse_time
from virtmigrate.kube.resources import MIGRATIONS

JSON = dict[str, Any]
KEEP_ALL = -1
REASON_PRUNED = "MigrationsPruned"  # Event on the VM: finished Migrations deleted by the history limit
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


@dataclass(frozen=True)
class Finished:
    """One finished Migration, as the decision needs it."""

    name: str
    uid: str
    ended: _dt.datetime   # when it entered its terminal phase (else its creation)


@dataclass(frozen=True)
class PrunePlan:
    """Delete `delete` (oldest first); `kept` finished Migrations stay."""

    delete: tuple[Finished, ...] = ()
    kept: int = 0


def finished(obj: Mapping[str, Any]) -> Finished | None:
    """`obj` as a prunable Migration, or None when it must not be pruned (active, finalizer, deleting)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase not in TERMINAL_PHASES or meta.get("finalizers") or meta.get("deletionTimestamp"):
        return None
    stamps = [s.get("time") for s in status.get("phaseTransitionTimestamps") or [] if s.get("phase") == phase]
    ended = parse_time(stamps[-1] if stamps else None) or parse_time(meta.get("creationTimestamp")) or _EPOCH
    return Finished(str(meta.get("name", "")), str(meta.get("uid", "")), ended)


def decide_prune(migrations: Iterable[Mapping[str, Any]], keep: int) -> PrunePlan:
    """Of one VM's Migrations, the finished ones beyond the newest `keep` (newest by the time they ended,
    then by name); `keep` = -1 keeps all. Active Migrations are neither counted nor deleted."""
    done = sorted((f for f in map(finished, migrations) if f is not None), key=lambda f: (f.ended, f.name),
                  reverse=True)
    if keep < 0 or len(done) <= keep:
        return PrunePlan(kept=len(done))
    return PrunePlan(delete=tuple(reversed(done[keep:])), kept=keep)


class Deleter(Protocol):
    def delete(self, res: Any, name: str, namespace: str | None = None, *,
               grace_period_seconds: int | None = None, uid: str | None = None,
               propagation_policy: str | None = None) -> JSON: ...


def prune_history(plan: PrunePlan, *, namespace: str, vm: Mapping[str, Any], keep: int, client: Deleter,
                  recorder: EventRecorder) -> list[str]:
    """Carry out `plan`: delete each Migration (only the one with the planned uid) and record one Event on
    the VM naming those this call deleted. Returns their names."""
    deleted: list[str] = []
    for f in plan.delete:
        # NotFound: another worker or replica pruned it first. Conflict: the name now belongs to a newer
        # Migration (uid precondition) — not ours to delete.
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            client.delete(MIGRATIONS, f.name, namespace, uid=f.uid or None)
            deleted.append(f.name)
    if deleted:
        recorder.event(vm, NORMAL, REASON_PRUNED,
                       f"deleted {len(deleted)} finished Migration(s) beyond the history limit of {keep} per VM: "
                       + ", ".join(deleted))
    return deleted


def vm_ref(vm_raw: Mapping[str, Any] | None, namespace: str, name: str) -> Mapping[str, Any]:
    """The VM the Event is about: the cached object, or a reference by name if the VM is gone."""
    if vm_raw is not None:
        return vm_raw if vm_raw.get("kind") else {**vm_raw, "kind": "VM", "apiVersion": "kubevirt.io/v1alpha1"}
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name, "namespace": namespace}}
