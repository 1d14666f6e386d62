"""Pure decisions of the evacuation controller: for one node, the whole step that drains it of VMs (or stops).

Fed by: evacuation/controller.py with the node's state, the VMs on it (or marked as leaving it), their
Migrations, where each could go (evacuation/targets.py), the wall time and the settings. Consumed by: the same
controller, whose executor performs the returned Plan in order — node condition and Events first (so the
Node says which VMs cannot go anywhere before anything moves), then deletes, creates, VM status writes.
No I/O, no clock.

While the node is draining (cordoned, or carrying the drain taint), for each VM on it whose
spec.evictionStrategy migrates:
  * a Migration of the VM is in flight (any, ours or a user's)   -> wait for it;
  * no node can take it, LiveMigrate                             -> no Migration; the Node and the VM say why
                                                                    (its budget keeps the drain waiting);
  * no node can take it, LiveMigrateIfPossible                   -> release it: its budget goes, the drain
                                                                    evicts it and the guest is shut down;
  * its last evacuation failed less than the back-off ago        -> wait, the VM says until when;
  * otherwise                                                    -> create the next evacuation Migration.
Once the node is schedulable again (uncordon): evacuation Migrations that have not started moving memory
(no phase, Pending .. Scheduled) are deleted, running ones finish, nothing is created, the marks go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from virtmigrate.api.constants import (
    API_VERSION,
    LABEL_EVACUATION,
    LABEL_PREFIX,
    LABEL_VM,
    NODE_CONDITION_EVACUATION,
    EvictionStrategy,
    VMPhase,
)
from virtmigrate.api.names import ANNOTATION_VM, label_value
from virtmigrate.api.vm import VM
from virtmigrate.controller.evacuation.targets import Targets

JSON = dict[str, Any]
NAME_MAX = 63  # a Migration's name becomes a label value on its pods
ANNOTATION_ATTEMPT = f"{LABEL_PREFIX}/evacuation-attempt"  # on evacuation Migrations: 0, 1, 2, ...
# No memory moved yet: safe to drop. Not TargetReady: the agent starts the job the moment it reads it.
NOT_STARTED = ("", "Pending", "Scheduling", "Scheduled")
TERMINAL = ("Succeeded", "Failed")

# Reasons (status.evacuation.reason, condition reasons, Event reasons)
EVACUATING = "Evacuating"                  # an evacuation Migration moves the VM (or will, once admitted)
WAITING_FOR_MIGRATION = "WaitingForMigration"  # another Migration of the VM is in flight
NO_TARGET = "NoTarget"                     # no node can take the VM
RETRY_BACKOFF = "RetryBackoff"             # the last evacuation failed; the next starts after the back-off
EVACUATED = "Evacuated"                    # condition: no VM to evacuate is left on the node
VMS_CANNOT_MOVE = "VMsCannotMove"          # condition: some VMs cannot go anywhere
EVACUATION_BLOCKED = "EvacuationBlocked"   # Node Event: which VMs cannot go anywhere, and why
EVACUATION_IMPOSSIBLE = "EvacuationImpossible"  # VM Event: released for eviction (LiveMigrateIfPossible)
EVACUATION_CANCELLED = "EvacuationCancelled"    # Node Event: uncordoned, pending evacuations deleted


@dataclass(frozen=True)
class Settings:
    backoff_base_s: float = 10.0   # after the first failure; doubles with each further failure
    backoff_max_s: float = 300.0


@dataclass(frozen=True)
class MigrationInfo:
    """A Migration of a VM, as the decision needs it."""

    namespace: str
    name: str
    uid: str
    vm: str                          # spec.selector.name
    phase: str = ""                  # "" before the controller wrote one
    evacuation_node: str = ""        # its evacuation label: label_value(node) ("" for a user's Migration)
    attempt: int = -1                # its attempt annotation (-1 when absent)
    deleting: bool = False
    finished_at: datetime | None = None  # when it became terminal
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL or self.deleting

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> MigrationInfo:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        phase = str(status.get("phase") or "")
        finished = None
        for entry in status.get("phaseTransitionTimestamps") or []:
            if entry.get("phase") == phase and phase in TERMINAL:
                finished = _parse_time(entry.get("time"))
        try:
            attempt = int((meta.get("annotations") or {}).get(ANNOTATION_ATTEMPT, -1))
        except ValueError:
            attempt = -1
        return cls(namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
                   uid=str(meta.get("uid", "")), vm=str(((obj.get("spec") or {}).get("selector") or {}).get("name")
                                                        or ""),
                   phase=phase, evacuation_node=str((meta.get("labels") or {}).get(LABEL_EVACUATION, "")),
                   attempt=attempt, deleting=bool(meta.get("deletionTimestamp")), finished_at=finished,
                   reason=str(status.get("reason") or ""))


@dataclass(frozen=True)
class NodeState:
    name: str
    draining: bool                          # spec.unschedulable, or the drain taint
    condition: Mapping[str, Any] | None     # our condition on the Node now (None: absent)


@dataclass(frozen=True)
class NewMigration:
    vm: VM
    attempt: int


@dataclass(frozen=True)
class Plan:
    """Everything one sync does, in the order the executor performs it."""

    condition: JSON | None = None        # write this Node condition (None: leave it)
    remove_condition: bool = False       # delete our condition from the Node
    node_events: tuple[tuple[str, str, str], ...] = ()     # (type, reason, message) on the Node
    delete: tuple[MigrationInfo, ...] = ()                 # evacuation Migrations to drop (uncordon)
    create: tuple[NewMigration, ...] = ()                  # evacuation Migrations to create
    vm_status: tuple[tuple[VM, JSON | None], ...] = ()     # status.evacuation to write (None: clear)
    vm_events: tuple[tuple[VM, str, str, str], ...] = ()   # (vm, type, reason, message)
    requeue_after: float | None = None


def backoff_s(failures: int, settings: Settings) -> float:
    """Seconds to wait after the `failures`-th failed evacuation (0 before any)."""
    if failures <= 0:
        return 0.0
    return float(min(settings.backoff_base_s * 2 ** (failures - 1), settings.backoff_max_s))


def evacuation_name(vm: VM, node: str, attempt: int) -> str:
    """`evacuation-<vm>-<5 hex>`: deterministic per VM uid, node and attempt, at most 63 characters."""
    digest = hashlib.sha256(f"{vm.uid}:{node}:{attempt}".encode()).hexdigest()[:5]
    return f"{f'evacuation-{vm.name}'[: NAME_MAX - 6].rstrip('-.')}-{digest}"


def new_evacuation_migration(vm: VM, node: str, attempt: int) -> JSON:
    """The Migration that moves `vm` off `node` (pure): owned by the VM, labelled with the node."""
    return {"apiVersion": API_VERSION, "kind": "Migration",
            "metadata": {"name": evacuation_name(vm, node, attempt), "namespace": vm.namespace,
                         "labels": {LABEL_EVACUATION: label_value(node), LABEL_VM: label_value(vm.name)},
                         "annotations": {ANNOTATION_ATTEMPT: str(attempt), ANNOTATION_VM: vm.name},
                         "ownerReferences": [{"apiVersion": API_VERSION, "kind": "VM", "name": vm.name,
                                              "uid": vm.uid, "controller": True}]},
            "spec": {"selector": {"name": vm.name}}}


@dataclass
class _Acc:
    """What the per-VM decisions add to the plan."""

    create: list[NewMigration] = field(default_factory=list)
    vm_status: list[tuple[VM, JSON | None]] = field(default_factory=list)
    vm_events: list[tuple[VM, str, str, str]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)   # "ns/vm: why" of VMs no node can take
    crowded: list[str] = field(default_factory=list)   # "ns/vm: why" of VMs that fit alone, not all together
    moving: list[str] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)

    def mark(self, vm: VM, want: JSON | None) -> None:
        have = (vm.raw.get("status") or {}).get("evacuation") or None
        if (dict(have) if have else None) != want:
            self.vm_status.append((vm, want))


def decide_evacuation(node: NodeState, vms: Sequence[VM], migrations: Sequence[MigrationInfo],
                      targets: Mapping[str, Targets], *, now: datetime, settings: Settings = Settings()) -> Plan:
    """The step for `node`. `vms`: every VM that runs on the node or whose status.evacuation names it;
    `migrations`: every Migration of those VMs; `targets`: the verdict for each VM on the node (by key)."""
    by_vm: dict[str, list[MigrationInfo]] = {}
    for m in migrations:
        by_vm.setdefault(f"{m.namespace}/{m.vm}", []).append(m)
    if not node.draining:
        return _stop(node, vms, migrations)
    acc = _Acc()
    for vm in vms:
        on_node = vm.node == node.name and vm.phase is not None and vm.phase.value in ("Running", "Migrating")
        if not on_node or not vm.spec.eviction_strategy.migrates:
            if vm.evacuation.node == node.name:
                acc.mark(vm, None)  # it left (or no longer wants to move): the mark goes
            continue
        _decide_vm(vm, node.name, by_vm.get(vm.key, []), targets.get(vm.key), now, settings, acc)
    return _with_condition(node, acc)


def _decide_vm(vm: VM, node: str, migs: Sequence[MigrationInfo], t: Targets | None, now: datetime,
               settings: Settings, acc: _Acc) -> None:
    attempts = [m for m in migs if m.evacuation_node == label_value(node)]
    base: JSON = {"node": node, "attempts": len(attempts), "released": False}
    active = next((m for m in sorted(migs, key=lambda m: m.name) if m.active), None)
    if active is None and vm.phase is VMPhase.MIGRATING:
        # A Migration just ended and the migration controller has not yet recorded where the guest is.
        active = next((m for m in sorted(migs, key=lambda m: m.name, reverse=True)), None)
        acc.moving.append(vm.key)
        acc.mark(vm, {**base, "reason": EVACUATING if active and active.evacuation_node == label_value(node)
                      else WAITING_FOR_MIGRATION,
                      "message": f"Migration {active.name if active else '(unknown)'} moves it"})
        return
    if active is not None:
        reason = EVACUATING if active.evacuation_node == label_value(node) else WAITING_FOR_MIGRATION
        acc.moving.append(vm.key)
        acc.mark(vm, {**base, "reason": reason,
                      "message": f"Migration {active.name} moves it"})  # its phase is on the Migration: one write
        return
    if t is None or not t.movable:
        why = t.why_not() if t is not None else "not judged yet"
        acc.blocked.append(f"{vm.key}: {why}")
        if vm.spec.eviction_strategy is EvictionStrategy.LIVE_MIGRATE_IF_POSSIBLE:
            msg = (f"no node can take it ({why}); strategy LiveMigrateIfPossible: its launcher is no longer "
                   f"protected from eviction, so draining {node} shuts the guest down")
            if not vm.evacuation.released:
                acc.vm_events.append((vm, "Warning", EVACUATION_IMPOSSIBLE, msg))
            acc.mark(vm, {**base, "reason": NO_TARGET, "message": msg, "released": True})
        else:
            acc.mark(vm, {**base, "reason": NO_TARGET,
                          "message": f"no node can take it: {why}; the drain waits until one can (or set "
                                     "spec.evictionStrategy to LiveMigrateIfPossible or None to let it stop)"})
        return
    failed = sorted((m for m in attempts if m.phase == "Failed"), key=lambda m: (m.attempt, m.name))
    wait = backoff_s(len(failed), settings)
    last = failed[-1] if failed else None
    if last is not None and last.finished_at is not None:
        left = wait - (now - last.finished_at).total_seconds()
        if left > 0:
            acc.requeue.append(left)
            acc.mark(vm, {**base, "reason": RETRY_BACKOFF,
                          "message": f"evacuation {last.name} failed ({last.reason or 'Failed'}); attempt "
                                     f"{len(failed) + 1} starts in {wait:.0f}s (back-off after {len(failed)} "
                                     "failures)"})
            return
    if not t.fits_together:
        acc.crowded.append(f"{vm.key}: {t.why_not()}")  # still tried: the packing is greedy, maybe pessimistic
    attempt = max((m.attempt for m in attempts), default=-1) + 1
    acc.create.append(NewMigration(vm, attempt))
    acc.moving.append(vm.key)
    name = evacuation_name(vm, node, attempt)
    candidates = ", ".join(t.candidates)
    acc.vm_events.append((vm, "Normal", EVACUATING, f"node {node} is draining: Migration {name} moves the VM "
                                                    f"(candidates: {candidates})"))
    acc.mark(vm, {**base, "attempts": len(attempts) + 1, "reason": EVACUATING,
                  "message": f"Migration {name} moves it; candidates: {candidates}"})


def _with_condition(node: NodeState, acc: _Acc) -> Plan:
    if acc.blocked or acc.crowded:
        status, reason = "False", VMS_CANNOT_MOVE
        parts = []
        if acc.blocked:
            parts.append(f"{len(acc.blocked)} VMs cannot leave {node.name}: " + "; ".join(acc.blocked))
        if acc.crowded:
            parts.append(f"{len(acc.crowded)} VMs may not fit once the others have moved: " + "; ".join(acc.crowded))
        message = ". ".join(parts)
    elif acc.moving:
        status, reason = "True", EVACUATING
        message = f"moving {len(acc.moving)} VMs: {', '.join(acc.moving)}"
    else:
        status, reason = "True", EVACUATED
        message = "no VM that live-migrates is left on the node"
    have = node.condition or {}
    changed = (have.get("status"), have.get("reason"), have.get("message")) != (status, reason, message)
    condition = {"type": NODE_CONDITION_EVACUATION, "status": status, "reason": reason, "message": message}
    events: list[tuple[str, str, str]] = []
    if changed and (acc.blocked or acc.crowded):
        events.append(("Warning", EVACUATION_BLOCKED, message))
    if acc.create:
        names = ", ".join(c.vm.key for c in acc.create)
        events.append(("Normal", EVACUATING, f"evacuating {len(acc.create)} VMs by live migration: {names}"))
    return Plan(condition=condition if changed else None, node_events=tuple(events), create=tuple(acc.create),
                vm_status=tuple(acc.vm_status), vm_events=tuple(acc.vm_events),
                requeue_after=min(acc.requeue) if acc.requeue else None)


def _stop(node: NodeState, vms: Sequence[VM], migrations: Sequence[MigrationInfo]) -> Plan:
    drop = tuple(m for m in migrations if m.evacuation_node == label_value(node.name) and not m.deleting
                 and m.phase in NOT_STARTED)
    clear = tuple((vm, None) for vm in vms if vm.evacuation.node == node.name)
    events: tuple[tuple[str, str, str], ...] = ()
    if drop:
        events = (("Normal", EVACUATION_CANCELLED,
                   f"node {node.name} is schedulable again: deleted {len(drop)} evacuation Migrations that had not "
                   f"started ({', '.join(m.name for m in drop)}); running ones finish"),)
    return Plan(remove_condition=node.condition is not None, node_events=events, delete=drop, vm_status=clear)


def _parse_time(text: object) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
