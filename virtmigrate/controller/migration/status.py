"""Pure builders of the status the migration controller writes: Migration status and VM status.

Fed by: migration/execute.py (the current status from the store, the decision, the clock's wall time).
Consumed by: migration/execute.py, which sends the result as a merge patch guarded by resourceVersion.
Builders never modify their inputs; they return new dicts.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from virtmigrate.api.agentresult import AgentResult
from virtmigrate.api.constants import MigrationPhase, VMPhase

JSON = dict[str, Any]

COND_WAITING_CAPACITY = "WaitingForCapacity"  # True while capacity limits hold the Migration in Pending
COND_UNSCHEDULABLE = "Unschedulable"          # True while no node can take the target launcher pod
COND_POLICY_CLAMPED = "PolicyClamped"          # True: its MigrationPolicy's settings were cut to the cluster's limits


def iso(t: _dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the API accepts for date-time fields."""
    return t.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def phase_entered(status: Mapping[str, Any], phase: str | None) -> _dt.datetime | None:
    """When the Migration entered `phase` (its latest entry in phaseTransitionTimestamps)."""
    for entry in reversed(status.get("phaseTransitionTimestamps") or []):
        if entry.get("phase") == phase:
            return parse_time(entry.get("time"))
    return None


def condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def with_condition(conditions: list[JSON], ctype: str, cstatus: str, reason: str, message: str,
                   now: _dt.datetime) -> list[JSON]:
    """`conditions` with `ctype` set; lastTransitionTime changes only when the status changes."""
    out: list[JSON] = []
    found = False
    for c in conditions:
        if c.get("type") == ctype:
            found = True
            changed = c.get("status") != cstatus
            c = {"type": ctype, "status": cstatus, "reason": reason, "message": message,
                 "lastTransitionTime": iso(now) if changed else c.get("lastTransitionTime", iso(now))}
        out.append(dict(c))
    if not found:
        out.append({"type": ctype, "status": cstatus, "reason": reason, "message": message,
                    "lastTransitionTime": iso(now)})
    return out


def with_phase(status: Mapping[str, Any], phase: MigrationPhase, now: _dt.datetime, **fields: Any) -> JSON:
    """A new status in `phase` with its transition timestamp and `fields` set (None removes a field).

    Conditions that only make sense in the phase being left are resolved (status False). Pure: what changes
    is new, the rest is shared with `status` (a read-only cached object: never change the result in place
    below its top level)."""
    out: JSON = dict(status)
    if out.get("phase") != phase.value:
        out["phase"] = phase.value
        out["phaseTransitionTimestamps"] = [*out.get("phaseTransitionTimestamps", []),
                                            {"phase": phase.value, "time": iso(now)}]
        conds = out.get("conditions") or []
        if phase != MigrationPhase.PENDING and condition(out, COND_WAITING_CAPACITY):
            conds = with_condition(conds, COND_WAITING_CAPACITY, "False", "Admitted",
                                   "capacity was available", now)
        if phase not in (MigrationPhase.PENDING, MigrationPhase.SCHEDULING) and condition(out, COND_UNSCHEDULABLE):
            unsched = condition(out, COND_UNSCHEDULABLE) or {}
            if phase == MigrationPhase.FAILED:
                conds = with_condition(conds, COND_UNSCHEDULABLE, "True", "Unschedulable",
                                       str(unsched.get("message", "")), now)
            else:
                conds = with_condition(conds, COND_UNSCHEDULABLE, "False", "Scheduled",
                                       "the target launcher pod was bound to a node", now)
        if conds:
            out["conditions"] = conds
    for k, v in fields.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> JSON:
    """A JSON merge patch turning status `old` into `new` (top-level keys; lists replace whole)."""
    patch: JSON = {k: v for k, v in new.items() if old.get(k) != v}
    for k in old:
        if k not in new:
            patch[k] = None
    return patch


def agent_result(code: int, message: str) -> JSON:
    """status.result from the agent's exit code and termination message (virtmigrate.api.agentresult), with
    the agent's human-readable reason under "message" (split off by `split_result`: the CRD keeps it in
    status.message)."""
    r = AgentResult.parse(code, message)
    return {**r.status_result(), "message": r.message}


def split_result(result: Mapping[str, Any] | None) -> tuple[JSON | None, str]:
    """(status.result without the message, the message)."""
    if result is None:
        return None, ""
    r = dict(result)
    return r, str(r.pop("message", "") or "")


# --- VM status ------------------------------------------------------------------------------------

def vm_migrating(vm_status: Mapping[str, Any], *, migration_name: str, migration_uid: str, source_node: str,
                 target_pod: str, now: _dt.datetime) -> JSON:
    """The VM's status once a Migration has taken it: phase Migrating, migrationState started."""
    out = dict(vm_status)  # top-level fields are replaced, never changed in place
    out["phase"] = VMPhase.MIGRATING.value
    out["migrationState"] = {"migrationName": migration_name, "migrationUID": migration_uid,
                             "sourceNode": source_node, "targetPod": target_pod,
                             "startTimestamp": iso(now), "completed": False}
    return out


def vm_on_target(vm_status: Mapping[str, Any], *, target_node: str, target_pod: str, mode: str,
                 now: _dt.datetime) -> JSON:
    """The VM's status after a successful migration: it runs on the target node in the target pod."""
    out = dict(vm_status)  # top-level fields are replaced, never changed in place
    out.update(phase=VMPhase.RUNNING.value, node=target_node, launcherPod=target_pod)
    state = dict(out.get("migrationState") or {})
    state.update(targetNode=target_node, targetPod=target_pod, endTimestamp=iso(now), completed=True,
                 result="Succeeded")
    if mode:
        state["mode"] = mode
    out["migrationState"] = state
    return out


def vm_on_source(vm_status: Mapping[str, Any], *, reason: str, now: _dt.datetime, pod: str = "") -> JSON:
    """The VM's status after a failed or cancelled migration: back to Running where it was (in `pod` when a
    witness launcher holds the guest there now, else in its recorded launcher pod)."""
    out = dict(vm_status)  # top-level fields are replaced, never changed in place
    out["phase"] = VMPhase.RUNNING.value
    if pod:
        out["launcherPod"] = pod
    state = dict(out.get("migrationState") or {})
    state.update(endTimestamp=iso(now), completed=True,
                 result="Cancelled" if reason == "Cancelled" else f"Failed: {reason}")
    out["migrationState"] = state
    return out


def vm_lost(vm_status: Mapping[str, Any], *, reason: str, message: str, now: _dt.datetime) -> JSON:
    """The VM's status when no node verifiably runs its guest: never Running. GuestLost -> Failed (the
    VM controller starts it again if it should run); the guest on both nodes or unknown -> Unknown."""
    out = dict(vm_status)  # top-level fields are replaced, never changed in place
    out["phase"] = "Failed" if reason == "GuestLost" else "Unknown"
    out["reason"] = reason
    out["message"] = message
    state = dict(out.get("migrationState") or {})
    state.update(endTimestamp=iso(now), completed=True, result=f"Failed: {reason}")
    out["migrationState"] = state
    return out


def completed_progress(progress: Mapping[str, Any] | None, result: Mapping[str, Any] | None) -> JSON:
    """status.progress of a Succeeded migration: everything sent (100 %), with the result's data figures."""
    out: JSON = dict(progress or {})
    out.update(percent=100, percentText="100%", dataRemaining=0)
    for k in ("dataTotal", "dataProcessed", "mode"):
        if result and k in result:
            out[k] = result[k]
    return out
