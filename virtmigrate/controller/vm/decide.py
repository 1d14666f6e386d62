"""Pure decisions of the VM controller: from a VM and its launcher pods, the writes that converge them.

Fed by vm/controller.py with the VM (virtmigrate.api.VM) and read-only views of the launcher pods that
carry its label (from the informer's cache); returns a Plan the controller executes in order: delete
pods, create one pod, patch the VM's status, record an event. No I/O, no clock.

The contract with the migration controller (see vm/controller.py) is enforced here:
  * a VM whose status.phase is Migrating is not touched at all, nor one the migration controller left
    Unknown (the guest on both nodes, or its location never settled: an admin decides; stopping it works);
  * status.launcherPod is authoritative: the pod it names is the VM's pod, whatever its labels;
  * launcher pods carrying a Migration label (targets) are left alone unless they are the current pod;
  * a launcher that exited with reason Migrated while the VM is not Migrating means its guest left by a
    migration no Migration owns (virsh, a Migration force-removed mid-flight): the VM is Unknown until
    the nodes say where the guest is — a probe launcher on every node that has no voice yet — then it
    runs where one reports it running, or — once every node says it has none and every probe has stopped —
    starts again (`_migrated_away`, `_start_again`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from virtmigrate.api.constants import VMPhase
from virtmigrate.api.domainfacts import LAUNCHER_GONE_REASONS, LEFTOVER_REFUSED_REASON, parse_termination
from virtmigrate.api.vm import VM
from virtmigrate.controller.migration.locate import Where, guest_on
from virtmigrate.controller.podstate import PodView
from virtmigrate.controller.vm.pods import launcher_pod_name

JSON = dict[str, Any]
MIGRATED_REASON = "Migrated"  # virtmigrate.launcher.exitcodes.Reason.MIGRATED
INVALID_SPEC_REASON = "InvalidSpec"  # the spec cannot be used (does not parse, disallowed path, pod rejected)
NOT_FOUND_REASON = "GuestNotFound"  # every node said it has none: the probes stop, then a new launcher starts it
LOCATING_REASONS = ("LocatingGuest", "GuestOnSeveralNodes", NOT_FOUND_REASON)  # this controller's own Unknown
STATUS_FIELDS = ("phase", "node", "launcherPod", "domainUUID", "reason", "message")
COND_GUEST_LOCATED = "GuestLocated"  # False while a guest that left without a Migration is looked for


@dataclass(frozen=True)
class LauncherPod:
    """A launcher pod of the VM as the decision needs it."""

    view: PodView
    owner_uid: str = ""   # the VM uid of its controller ownerReference
    migration: str = ""   # the Migration label (target launchers)
    probe_for: str = ""   # a probe's annotation: the launcher pod whose guest it looks for (vm/pods.py)


@dataclass(frozen=True)
class Plan:
    """Writes, in order. Empty means nothing to do."""

    delete: tuple[tuple[str, str], ...] = ()   # (pod name, uid)
    create_attempt: int | None = None          # create launcher_pod_name(vm, attempt=...)
    status: JSON | None = None                 # the managed status fields to write
    confirm_gone: str = ""                     # a pod the cache lacks: confirm with a live read first
    on_node: str = ""                          # bind the created pod to this node (adopt a guest there)
    probe_nodes: tuple[str, ...] = ()          # create a probe on each (new_probe_pod, looking for probe_for)
    probe_for: str = ""
    event: tuple[str, str, str] | None = None  # (type, reason, message)
    condition: tuple[str, str, str] | None = None  # COND_GUEST_LOCATED (status, reason, message), with `status`
    requeue_after: float | None = None


def managed_status(vm: VM) -> JSON:
    st = vm.raw.get("status") or {}
    return {k: st.get(k, "") or "" for k in STATUS_FIELDS}


def _status(vm: VM, phase: VMPhase, *, node: str = "", pod: str = "", reason: str = "", message: str = "",
            uuid: str = "") -> JSON:
    return {"phase": phase.value, "node": node, "launcherPod": pod, "domainUUID": uuid, "reason": reason,
            "message": message}


def _changed(vm: VM, want: JSON) -> JSON | None:
    return want if managed_status(vm) != want else None


def next_attempt(vm: VM, existing_names: Sequence[str]) -> int:
    """The first attempt number whose pod name is free (names are deterministic per VM uid and attempt)."""
    taken = set(existing_names)
    n = 0
    while launcher_pod_name(vm, attempt=n) in taken:
        n += 1
    return n


def attempt_of(vm: VM, name: str, existing_names: Sequence[str]) -> int:
    """The attempt number whose launcher pod name is `name` (a status names it before the pod exists), or
    the first free one if no attempt up to the existing pods' count (plus a margin) has that name."""
    for n in range(len(existing_names) + 64):
        if launcher_pod_name(vm, attempt=n) == name:
            return n
    return next_attempt(vm, existing_names)


def decide_vm(vm: VM, pods: Sequence[LauncherPod], *, removed_note: str = "", pod_confirmed_gone: bool = False,
              all_pod_names: Sequence[str] = (), nodes: Sequence[str] = ()) -> Plan:
    """What to do about `vm` given its launcher pods (all pods with its VM label in its namespace) and the
    cluster's `nodes` (where a guest that left without a Migration is looked for)."""
    if vm.phase == VMPhase.MIGRATING:
        return Plan()  # the migration controller owns the VM until it sets another phase
    if vm.phase == VMPhase.UNKNOWN and _status_reason(vm) not in LOCATING_REASONS and vm.spec.running:
        return Plan()  # the migration controller's verdict (guest on both nodes, or nowhere known): an admin's
    stale = tuple((p.view.name, p.view.uid) for p in pods
                  if p.owner_uid and p.owner_uid != vm.uid and not p.view.deleting)  # of an older VM of this name
    own = [p for p in pods if not p.owner_uid or p.owner_uid == vm.uid]
    current = next((p for p in own if vm.launcher_pod and p.view.name == vm.launcher_pod), None)
    others = [p for p in own if p is not current and not p.migration]
    if vm.spec.running:
        plan = _running(vm, current, others, removed_note=removed_note, pod_confirmed_gone=pod_confirmed_gone,
                        all_pod_names=all_pod_names, candidates=[p for p in own if p is not current], nodes=nodes)
    else:
        plan = _stopped(vm, current, others)
    observed = (vm.raw.get("status") or {}).get("observedGeneration")
    if plan.status is None and observed != (vm.raw.get("metadata") or {}).get("generation"):
        plan = replace(plan, status=managed_status(vm))  # record that this generation was seen
    if stale:
        plan = replace(plan, delete=stale + plan.delete)
    return plan


def _running(vm: VM, current: LauncherPod | None, others: list[LauncherPod], *, removed_note: str,
             pod_confirmed_gone: bool, all_pod_names: Sequence[str], candidates: Sequence[LauncherPod] = (),
             nodes: Sequence[str] = ()) -> Plan:
    phase = vm.phase
    uuid = vm.uid
    if current is None and phase == VMPhase.UNKNOWN and _status_reason(vm) == NOT_FOUND_REASON:
        return _start_again(vm, others, all_pod_names=all_pod_names)
    if current is None and vm.launcher_pod and phase in (VMPhase.RUNNING, VMPhase.SCHEDULING):
        if not pod_confirmed_gone:
            return Plan(confirm_gone=vm.launcher_pod)
        msg = f"launcher pod {vm.launcher_pod} was deleted; the guest no longer runs"
        if removed_note:
            msg += f" ({removed_note})"
        msg += "; set spec.running to false and back to true to start it again"
        return Plan(status=_changed(vm, _status(vm, VMPhase.FAILED, pod=vm.launcher_pod,
                                                reason="LauncherPodDeleted", message=msg)),
                    event=("Warning", "LauncherPodDeleted", msg))
    if current is None:
        if phase not in (None, VMPhase.PENDING, VMPhase.STOPPED, VMPhase.SCHEDULING) and not _spec_fixed(vm):
            return Plan()  # Failed stays Failed until the user stops and starts the VM again
        finished = tuple((p.view.name, p.view.uid) for p in others if p.view.terminated and not p.view.deleting)
        live = [p for p in others if not p.view.terminated and not p.view.deleting]
        if live:  # a pod we created but never recorded (crash between create and status write): adopt it
            p = live[0]
            extra = tuple((q.view.name, q.view.uid) for q in live[1:])
            return Plan(delete=finished + extra,
                        status=_changed(vm, _status(vm, VMPhase.SCHEDULING, node=p.view.node, pod=p.view.name)))
        attempt = next_attempt(vm, all_pod_names)
        name = launcher_pod_name(vm, attempt=attempt)
        return Plan(delete=finished, create_attempt=attempt,
                    status=_status(vm, VMPhase.SCHEDULING, pod=name),
                    event=("Normal", "LauncherCreated", f"created launcher pod {name}"))
    v = current.view
    # Duplicates and leftovers go, but for a paused, persistent copy a migration left (kept for an admin).
    extra = tuple((p.view.name, p.view.uid) for p in others if not p.view.deleting
                  and not p.view.keeps_persistent_copy)
    if v.deleting and not v.terminated:
        return Plan(delete=extra)  # being deleted: its disappearance is handled when it is gone
    if v.terminated:
        reason, message = parse_termination(v.termination_message, v.exit_code)
        if reason == MIGRATED_REASON:  # and no Migration owns the VM: it would be Migrating
            return _migrated_away(vm, v, candidates, nodes=nodes, all_pod_names=all_pod_names)
        if reason not in LAUNCHER_GONE_REASONS and not v.deleting and v.node:
            # Killed, or libvirt unreachable: the guest may well still run there (QEMU is libvirtd's child).
            # A new launcher bound to that node adopts it if it runs, or starts it if it really is gone.
            attempt = next_attempt(vm, all_pod_names)
            name = launcher_pod_name(vm, attempt=attempt)
            text = (f"launcher pod {v.name} on {v.node} ended ({v.exit_code}: {reason}) without proof that the "
                    f"guest is gone: launcher pod {name} on the same node adopts the guest, or starts it again")
            return Plan(delete=(*extra, (v.name, v.uid)), create_attempt=attempt, on_node=v.node,
                        status=_status(vm, VMPhase.SCHEDULING, node=v.node, pod=name, reason="LauncherRestarted",
                                       message=text),
                        event=("Warning", "LauncherRestarted", text))
        message = f"launcher pod {v.name} on {v.node or 'no node'} exited ({v.exit_code}): {reason}: {message}"
        if v.deleting:
            reason = "LauncherPodDeleted"
            message = f"the launcher pod was deleted, so the guest was stopped; {message}"
        want = _status(vm, VMPhase.FAILED, node="", pod=v.name, reason=reason, message=message)
        st = _changed(vm, want)
        return Plan(delete=extra, status=st, event=("Warning", reason, message) if st else None)
    if v.running and (v.ready or (v.domain is not None and v.domain.running)):
        return Plan(delete=extra, status=_changed(vm, _status(vm, VMPhase.RUNNING, node=v.node, pod=v.name,
                                                              uuid=uuid)))
    if v.unschedulable:
        return Plan(delete=extra, status=_changed(vm, _status(vm, VMPhase.SCHEDULING, pod=v.name,
                                                              reason="Unschedulable", message=v.unschedulable)))
    return Plan(delete=extra, status=_changed(vm, _status(vm, VMPhase.SCHEDULING, node=v.node, pod=v.name)))


def _migrated_away(vm: VM, gone: PodView, candidates: Sequence[LauncherPod], *, nodes: Sequence[str],
                   all_pod_names: Sequence[str]) -> Plan:
    """The VM's launcher `gone` exited because its guest left by live migration, and no Migration owns the
    VM. Where the guest is now is read from the nodes, never assumed: each live launcher pod of the VM
    (a probe, or a target a vanished Migration left) reports what its node's libvirt holds, and nothing is
    concluded before every node has spoken (a guest found on one node may run on a silent one too).

    - some node has no voice yet: a probe (a receive-mode launcher that never starts a guest) goes there,
      and the VM is `Unknown` meanwhile (`LocatingGuest`) — never Running with no guest;
    - one node runs it: the VM runs there, in that pod (Warning `GuestFound`);
    - several do: `Unknown`, every pod kept for an admin (`GuestOnSeveralNodes`);
    - every node says it has none: the guest is nowhere; the probes stop, and then it starts again
      (`GuestNotFound`: `Unknown` naming the launcher pod to come, then `_start_again`);
    - anything else (a paused copy, a job, a node whose libvirt does not answer): `Unknown`, waiting."""
    live = [p for p in candidates if not p.view.terminated and not p.view.deleting]
    said = {p.view.name: guest_on(p.view) for p in live}
    running = [p for p in live if said[p.view.name] == Where.RUNNING]
    probes = tuple((p.view.name, p.view.uid) for p in candidates if p.probe_for and not p.view.deleting)
    silent = tuple(n for n in nodes if n not in {p.view.node for p in live})
    heard = bool(nodes) and not silent and all(w != Where.UNKNOWN for w in said.values())
    head = (f"launcher pod {gone.name} on {gone.node or 'no node'} exited because the guest left by a live "
            "migration that no Migration owns")
    on = sorted({p.view.node for p in running})
    if heard and len(on) > 1:
        text = f"{head}; nodes {', '.join(on)} all run it: every launcher pod is kept for an admin to choose"
        want = _status(vm, VMPhase.UNKNOWN, pod=gone.name, reason="GuestOnSeveralNodes", message=text)
        st = _changed(vm, want)
        return Plan(status=st, event=("Warning", "GuestOnSeveralNodes", text) if st else None,
                    condition=("False", "GuestOnSeveralNodes", text))
    if heard and running:
        p = running[0].view
        text = f"{head}; launcher pod {p.name} on {p.node} reports it running there: the VM runs there now"
        absent = tuple(x for x in probes if said.get(x[0]) == Where.ABSENT)  # a probe that holds nothing
        return Plan(delete=((gone.name, gone.uid), *absent),
                    status=_status(vm, VMPhase.RUNNING, node=p.node, pod=p.name, uuid=vm.uid, reason="GuestFound",
                                   message=text),
                    event=("Warning", "GuestFound", text), condition=("True", "GuestFound", text))
    if heard and all(w == Where.ABSENT for w in said.values()):
        # The probes stop before the new launcher starts the guest: a probe on the node where it starts
        # would report it, and hold it — and its deletion would then shut the guest down (_start_again).
        name = launcher_pod_name(vm, attempt=next_attempt(vm, all_pod_names))
        text = (f"{head}; no node runs it (each node's launcher reports no such domain): launcher pod {name} "
                "starts it again once the probes have stopped")
        return Plan(delete=probes,
                    status=_status(vm, VMPhase.UNKNOWN, pod=name, reason=NOT_FOUND_REASON, message=text),
                    event=("Warning", NOT_FOUND_REASON, text), condition=("True", NOT_FOUND_REASON, text),
                    requeue_after=1.0)
    waiting = sorted({*silent, *(p.view.node for p in live if said[p.view.name] not in (Where.ABSENT,
                                                                                        Where.RUNNING))})
    text = (f"{head}; looking for it: waiting for the launchers on {', '.join(waiting) or '(no node known)'} to "
            "say whether they run it")
    want = _status(vm, VMPhase.UNKNOWN, pod=gone.name, reason="LocatingGuest", message=text)
    first = managed_status(vm)["reason"] != "LocatingGuest"  # one Event, however often the message changes
    return Plan(probe_nodes=silent, probe_for=gone.name, status=_changed(vm, want), requeue_after=2.0,
                event=("Warning", "LocatingGuest", f"{head}: looking for it on every node") if first else None,
                condition=("False", "LocatingGuest", text))


def _start_again(vm: VM, others: Sequence[LauncherPod], *, all_pod_names: Sequence[str]) -> Plan:
    """Every node said it has no guest (_migrated_away), and the status names the launcher pod that starts
    it again. That pod is created only once every probe has ended: a probe still running on its node
    would see the guest start and hold it too (two pods of one guest on one node, and deleting either
    shuts it down). The pod that lost the guest and the ended probes go with the create."""
    live = [p for p in others if p.probe_for and not p.view.terminated]
    if live:
        return Plan(delete=tuple((p.view.name, p.view.uid) for p in live if not p.view.deleting), requeue_after=1.0)
    text = f"no node runs the guest: launcher pod {vm.launcher_pod} starts it again"
    return Plan(delete=tuple((p.view.name, p.view.uid) for p in others if p.view.terminated and not p.view.deleting),
                create_attempt=attempt_of(vm, vm.launcher_pod, all_pod_names),
                status=_status(vm, VMPhase.SCHEDULING, pod=vm.launcher_pod, reason=NOT_FOUND_REASON, message=text))


def leftover_refused_event(view: PodView) -> tuple[str, str, str] | None:
    """The Warning Event for the VM when one of its receive-mode launchers (a migration's target, a witness,
    a probe) ended because libvirt refused to destroy a copy of it that never ran on that node: nothing
    else would say that the node keeps a record that blocks the VM there, and how to clear it."""
    if not view.terminated:
        return None
    reason, message = parse_termination(view.termination_message, view.exit_code)
    if reason != LEFTOVER_REFUSED_REASON:
        return None
    return ("Warning", LEFTOVER_REFUSED_REASON, f"launcher pod {view.name} on node {view.node}: {message}")


def _stopped(vm: VM, current: LauncherPod | None, others: list[LauncherPod]) -> Plan:
    pods = ([current] if current is not None else []) + others
    to_delete = tuple((p.view.name, p.view.uid) for p in pods if not p.view.deleting)
    stopping = [p for p in pods if not p.view.terminated]
    if stopping:
        names = ", ".join(p.view.name for p in stopping)
        want = managed_status(vm) | {"reason": "Stopping", "message": f"shutting the guest down ({names})"}
        return Plan(delete=to_delete, status=_changed(vm, want))
    want = _status(vm, VMPhase.STOPPED)
    st = _changed(vm, want)
    return Plan(delete=to_delete, status=st, event=("Normal", "Stopped", "the guest is stopped") if st else None)


def owner_uid(pod: Mapping[str, Any]) -> str:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "VM" and ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def _status_reason(vm: VM) -> str:
    return str((vm.raw.get("status") or {}).get("reason") or "")


def _spec_fixed(vm: VM) -> bool:
    """The VM failed for an unusable spec and the spec changed since: it may start now."""
    st = vm.raw.get("status") or {}
    generation = (vm.raw.get("metadata") or {}).get("generation")
    return (vm.phase == VMPhase.FAILED and st.get("reason") == INVALID_SPEC_REASON
            and st.get("observedGeneration") != generation)


def decide_invalid_spec(raw: Mapping[str, Any], problem: str, *, guest_may_run: bool) -> Plan:
    """A VM whose spec the controller cannot use (`problem` names the field and the fix).

    With no launcher pod that may hold a guest, the VM is Failed with reason InvalidSpec; once the spec
    is fixed (a new generation) `decide_vm` starts it. A guest that already runs keeps running with the
    spec it started with: its phase and node stay, the reason and message say the current spec is
    unusable. A Migrating VM is the migration controller's. The Warning Event comes with a change only."""
    st = raw.get("status") or {}
    if st.get("phase") == VMPhase.MIGRATING.value:
        return Plan()
    current = {k: st.get(k, "") or "" for k in STATUS_FIELDS}
    if guest_may_run and current["phase"] in (VMPhase.RUNNING.value, VMPhase.SCHEDULING.value):
        message = (f"{problem}; the guest keeps running with the spec it started with, and the fixed spec "
                   "applies from its next start")
        want = current | {"reason": INVALID_SPEC_REASON, "message": message}
    else:
        message = f"{problem}; the VM starts once its spec is fixed"
        want = {"phase": VMPhase.FAILED.value, "node": "", "launcherPod": current["launcherPod"],
                "domainUUID": "", "reason": INVALID_SPEC_REASON, "message": message}
    changed = want != current
    generation = (raw.get("metadata") or {}).get("generation")
    if not changed and st.get("observedGeneration") == generation:
        return Plan()
    return Plan(status=want, event=("Warning", INVALID_SPEC_REASON, message) if changed else None)
