"""What must hold after every round, as a pure function of a facts snapshot and what the round did.

Consumed by campaign.py, which polls `violations(...)` until it returns nothing (the round recovered) or its
bound runs out (what is left are the round's violations). The kinds, one line each:
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.chaos.facts import Snapshot
from virtmigrate.api.constants import LABEL_ROLE, LABEL_VM, ROLE_LAUNCHER


class Kind(enum.StrEnum):
    API_UNAVAILABLE = "api-unavailable"            # the API server did not answer
    LIBVIRTD_DOWN = "libvirtd-down"                # a node's libvirtd does not answer (nobody restarted it)
    LIBVIRTD_NOT_RESTARTED = "libvirtd-not-restarted"  # a killed libvirtd was not back within the bound
    NODE_NOT_READY = "node-not-ready"              # a node is not Ready
    GUEST_NOT_RUNNING = "guest-not-running"        # no node runs the guest (lost, shut off or paused)
    GUEST_DOUBLED = "guest-doubled"                # more than one node runs the guest
    GUEST_RESTARTED = "guest-restarted"            # the heartbeat counter went back: the guest was rebooted
    HEARTBEAT_STALLED = "heartbeat-stalled"        # the guest's serial heartbeat does not advance
    LEFTOVER_DOMAIN = "leftover-domain"            # a domain of the VM on a node that does not run the guest
    VM_STATUS_WRONG = "vm-status-wrong"            # the VM is not Running on the node that runs its guest
    MIGRATION_NOT_TERMINAL = "migration-not-terminal"  # not Succeeded/Failed within the bound
    CANCEL_NOT_DONE = "cancel-not-done"            # a deleted Migration still exists (finalizer stuck)
    FINALIZER_STUCK = "finalizer-stuck"            # deleting a terminal Migration did not finish
    OUTCOME_MISMATCH = "outcome-mismatch"          # Succeeded but guest not on target, or Failed but not on source
    UNEXPECTED_FAILURE = "unexpected-failure"      # a Migration the fault did not touch failed
    TWO_AGENT_PODS = "agent-pods>1"                # a Migration had more than one agent pod
    STRAY_PODS = "stray-pods"                      # pods of the VM besides its one launcher on the guest's node


__doc__ = (__doc__ or "") + "\n".join(f"    {k.value}" for k in Kind) + "\n"


@dataclass(frozen=True)
class Violation:
    kind: Kind
    vm: str      # "" for the cluster as a whole
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}{'[' + self.vm + ']' if self.vm else ''}: {self.detail}"


@dataclass(frozen=True)
class Expect:
    """What the round did to one VM."""

    vm: str
    domain: str                  # libvirt domain name (<namespace>_<vm>)
    migration: str               # the round's Migration of this VM
    migration_uid: str
    source: str                  # the node the guest ran on before the round
    target: str                  # the Migration's status.targetNode as last seen ("" when never chosen)
    cancelled: bool              # the round deleted this Migration
    touched: bool                # the round's fault could make this Migration fail
    heartbeat_before: int        # the guest's counter before the round


def violations(s: Snapshot, expects: list[Expect], *, agent_pods: Mapping[str, list[Any]],
               heartbeats: Mapping[str, int | None]) -> list[Violation]:
    """Every invariant that does not hold in `s`. `agent_pods`: Migration UID -> agent pods ever seen;
    `heartbeats`: VM -> its counter on the node that runs it now (None when unreadable)."""
    if s.api_error:
        return [Violation(Kind.API_UNAVAILABLE, "", s.api_error[:200])]
    out = [Violation(Kind.LIBVIRTD_DOWN, "", node) for node, doms in s.domains.items() if doms is None]
    out += [Violation(Kind.NODE_NOT_READY, "", node) for node, ready in s.nodes_ready.items() if not ready]
    for e in expects:
        out += _vm_violations(s, e, agent_pods.get(e.migration_uid, []), heartbeats.get(e.vm))
    return out


def reported_record(s: Snapshot, e: Expect, node: str) -> bool:
    """The VM's domain on `node` is a libvirt record of a copy that never ran, which libvirt refuses to destroy
    (a libvirt 9.0 defect: facts.never_started), and the product said so on the VM (LeftoverRefused). No guest
    runs there; the harness clears the record as the node's admin would (campaign._clear_records)."""
    return (node, e.domain) in s.never_started and e.vm in s.refused_warned


def _vm_violations(s: Snapshot, e: Expect, agents: list[Any], beat: int | None) -> list[Violation]:
    out: list[Violation] = []

    def bad(kind: Kind, detail: str) -> None:
        out.append(Violation(kind, e.vm, detail))

    states = {n: d[e.domain] for n, d in s.domains.items() if d is not None and e.domain in d}
    running = sorted(n for n, st in states.items() if st == "running")
    where = running[0] if len(running) == 1 else ""
    if not running:
        bad(Kind.GUEST_NOT_RUNNING, f"domain states {states or 'nowhere'} (was on {e.source})")
    elif len(running) > 1:
        bad(Kind.GUEST_DOUBLED, f"running on {running}")
    leftovers = {n: st for n, st in states.items() if n != where and not reported_record(s, e, n)}
    if where and leftovers:
        bad(Kind.LEFTOVER_DOMAIN, f"guest on {where}, also {leftovers}")
    if where and beat is not None and beat < e.heartbeat_before:
        bad(Kind.GUEST_RESTARTED, f"heartbeat {beat} on {where} < {e.heartbeat_before} before the round")

    vm = s.vms.get(e.vm)
    st = (vm or {}).get("status") or {}
    if vm is None:
        bad(Kind.VM_STATUS_WRONG, "the VM object is gone")
    elif (where and (st.get("phase"), st.get("node")) != ("Running", where)) \
            or (not where and st.get("phase") == "Running"):
        bad(Kind.VM_STATUS_WRONG, f"status {st.get('phase')}/{st.get('node')} ({st.get('reason', '')}), "
                                  f"guest on {where or running or 'no node'}")

    m = s.migrations.get(e.migration)
    if m is not None and m["metadata"].get("uid") != e.migration_uid:
        m = None  # a namesake is not ours
    mst = (m or {}).get("status") or {}
    phase, reason = mst.get("phase", ""), mst.get("reason", "")
    if e.cancelled:
        if m is not None:
            bad(Kind.CANCEL_NOT_DONE, f"deleted, still there: phase {phase or '-'} ({reason}), finalizers "
                                      f"{m['metadata'].get('finalizers')}")
    elif m is None:
        bad(Kind.MIGRATION_NOT_TERMINAL, "the Migration vanished without a cancel")
    elif phase not in ("Succeeded", "Failed"):
        bad(Kind.MIGRATION_NOT_TERMINAL, f"phase {phase or '-'}")
    elif where:
        target = mst.get("targetNode") or e.target
        source = mst.get("sourceNode") or e.source
        if phase == "Succeeded" and where != target:
            bad(Kind.OUTCOME_MISMATCH, f"Succeeded ({reason}) to {target}, guest on {where}")
        if phase == "Failed" and where != source:
            bad(Kind.OUTCOME_MISMATCH, f"Failed ({reason}) on {source}, guest on {where}")
    if m is not None and phase == "Failed" and not e.touched:
        bad(Kind.UNEXPECTED_FAILURE, f"Failed ({reason}): {str(mst.get('message', ''))[:160]}")

    if len(agents) > 1:
        bad(Kind.TWO_AGENT_PODS, f"{len(agents)} agent pods: {sorted(a.name + '/' + a.uid[:8] for a in agents)}")

    mine = [p for p in s.pods if (p["metadata"].get("labels") or {}).get(LABEL_VM) == e.vm]
    holder = [p for p in mine if (p["metadata"].get("labels") or {}).get(LABEL_ROLE) == ROLE_LAUNCHER
              and p["metadata"]["name"] == st.get("launcherPod") and not p["metadata"].get("deletionTimestamp")
              and (p.get("spec") or {}).get("nodeName") == where]
    stray = [p for p in mine if p not in holder]
    if stray or len(holder) != 1:
        bad(Kind.STRAY_PODS, "; ".join(f"{p['metadata']['name']}@{(p.get('spec') or {}).get('nodeName')} "
                                       f"{(p.get('status') or {}).get('phase')}"
                                       f"{' terminating' if p['metadata'].get('deletionTimestamp') else ''}"
                                       for p in stray) + ("" if holder else " (no launcher holds the guest)"))
    return out
