r"""The Migration phase machine: one pure decision per sync, from what the controller observed.

Fed by: migration/execute.py, which gathers an `Observed` from the informers' stores (the Migration,
its VM, the source/target launcher pods and the agent pod, the capacity decision and the
placement check) and executes the returned `Decision` with exactly one API write.
Consumed by: nothing else; tested with literals in tests/unit/test_migration_phases.py.

    (none) -> Pending -> Scheduling -> Scheduled -> TargetReady -> Running -> Succeeded
                 \            \            \             \            \----> Failed
                  `-----------`------------`-------------`--------------> Failed

Every step is idempotent and derived from state held in the API, so a restarted controller
resumes each Migration where it stands. Three regimes:

- **progress** (not deleted, not terminal): fail fast on a bad selection, wait for capacity,
  then one transition per observed change of the target launcher or agent pod;
- **cancel** (deletionTimestamp set, finalizer held): stop the agent and learn its outcome first
  (a migration that completed just before the cancel is a success), otherwise fail as Cancelled;
- **cleanup** (terminal): make the VM's status tell where the guest runs, remove the pods that
  are no longer needed, wait until they are gone, then release the finalizer.
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass
from typing import Any

from virtmigrate.api.constants import MigrationPhase
from virtmigrate.api.exitcodes import PHASE_SUCCEEDED, ExitCode, phase_for_exit_code
from virtmigrate.controller.migration.status import agent_result
from virtmigrate.controller.podstate import PodView

P = MigrationPhase

# Reasons written to status.reason and Events (CamelCase, one line each).
REASON_INVALID_SPEC = "InvalidSpec"                    # the spec does not parse (or its VM's: e.g. a disallowed path)
REASON_POLICY_VIOLATION = "PolicyViolation"            # the spec asks for more than the cluster's policy limits
REASON_INVALID_DESTINATION = "InvalidDestination"      # the target Node's libvirt URI annotations are refused
REASON_VM_NOT_FOUND = "VMNotFound"                     # no VM of that name in the namespace
REASON_VM_NOT_RUNNING = "VMNotRunning"                 # the VM exists but no guest runs
REASON_VM_BUSY = "VMBusy"                              # another Migration is moving the VM
REASON_CONTRADICTION = "ConstraintContradiction"       # VM and Migration node constraints conflict
REASON_WAITING_CAPACITY = "WaitingForCapacity"         # capacity limits hold it in Pending
REASON_UNSCHEDULABLE = "Unschedulable"                 # no node can take the target launcher pod
REASON_TARGET_TIMEOUT = "TargetNotReady"               # the target launcher did not get ready in time
REASON_TARGET_FAILED = "TargetPodFailed"               # the target launcher pod ended or vanished
REASON_AGENT_NOT_STARTED = "AgentNotStarted"           # the agent pod never started in time
REASON_AGENT_GONE = "AgentPodGone"                     # the agent pod vanished without an outcome
REASON_VM_GONE = "VMDeleted"                           # the VM was deleted during the migration
REASON_CANCELLED = "Cancelled"                         # the Migration was deleted before it completed
REASON_MIGRATED = "Migrated"                           # success


class Action(enum.StrEnum):
    NOTHING = "Nothing"                    # wait for the next event (or `requeue_after`)
    ADD_FINALIZER = "AddFinalizer"         # hold the Migration until cancel/cleanup is complete
    WAIT_CAPACITY = "WaitCapacity"         # (enter and) stay Pending; condition says why
    ADMIT = "Admit"                        # -> Scheduling; record source node and child names
    MARK_VM_MIGRATING = "MarkVMMigrating"  # VM status: phase Migrating, migrationState started
    CREATE_TARGET_POD = "CreateTargetPod"  # the target launcher pod (receive mode)
    MARK_UNSCHEDULABLE = "MarkUnschedulable"  # condition with the per-node explanation
    SET_PHASE = "SetPhase"                 # -> `phase` (Scheduled records `target_node`)
    CREATE_AGENT_POD = "CreateAgentPod"    # the agent pod on the source node
    SUCCEED = "Succeed"                    # -> Succeeded with `result`
    FAIL = "Fail"                          # -> Failed with `reason`, `message` and maybe `result`
    RECORD_VM_ON_TARGET = "RecordVMOnTarget"  # VM status: node/launcher = target; migration done
    RECORD_VM_ON_SOURCE = "RecordVMOnSource"  # VM status: back to Running on the source
    DELETE_SOURCE_POD = "DeleteSourcePod"
    DELETE_TARGET_POD = "DeleteTargetPod"
    DELETE_AGENT_POD = "DeleteAgentPod"
    REMOVE_FINALIZER = "RemoveFinalizer"   # cleanup complete


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    message: str = ""
    phase: MigrationPhase | None = None     # for SET_PHASE
    target_node: str = ""                   # for SET_PHASE(Scheduled)
    result: dict[str, Any] | None = None    # for SUCCEED / FAIL after the agent ran
    requeue_after: float | None = None      # look again after this many seconds


@dataclass(frozen=True)
class VMState:
    """The VM as the phase machine sees it."""

    running: bool                 # a guest runs (phase Running or Migrating, with a node and pod)
    node: str = ""
    launcher_pod: str = ""
    migration_uid: str = ""       # status.migrationState.migrationUID
    migration_completed: bool = False


@dataclass(frozen=True)
class Timeouts:
    unschedulable_s: float = 300.0   # target pod unschedulable this long (from Scheduling) -> Failed
    pending_s: float = 900.0         # any other wait for the target or agent pod -> Failed


@dataclass(frozen=True)
class Observed:
    """Everything one decision depends on. Built by the sync from the stores; no I/O here."""

    uid: str
    vm_name: str
    phase: MigrationPhase | None
    deleting: bool = False
    has_finalizer: bool = False
    phase_age_s: float = 0.0             # seconds since the current phase was entered
    spec_error: str = ""                 # non-empty when the spec is invalid
    policy_violation: str = ""           # the spec's fields beyond the cluster's limits (controller/policy.py)
    destination_error: str = ""          # the target Node's libvirt URI annotations are refused (policy.py)
    vm: VMState | None = None
    competitor: str = ""                 # another active Migration of the same VM
    finishing: str = ""                  # another Migration of the VM that ended but still cleans up
    contradiction: str = ""              # conflicting node constraints, "" when they merge
    admit: bool = True                   # the capacity decision
    capacity_message: str = ""           # why not, when not admitted
    conditions_message: str = ""         # message of the current WaitingForCapacity/Unschedulable condition
    target_node: str = ""                # status.targetNode
    source_pod: PodView | None = None
    target_pod: PodView | None = None
    agent_pod: PodView | None = None
    agent_exit: tuple[int, str] | None = None  # exit code and message of an agent pod already gone
    infeasible: str = ""                 # the per-node explanation when the target is unschedulable


def decide(o: Observed, t: Timeouts = Timeouts()) -> Decision:
    """The next single step for the Migration described by `o`."""
    if o.phase is not None and o.phase.terminal:
        return _decide_cleanup(o)
    if o.deleting:
        if not o.has_finalizer:
            return Decision(Action.NOTHING, reason="finalizer already released")
        return _decide_cancel(o)
    if not o.has_finalizer:
        return Decision(Action.ADD_FINALIZER)
    if o.phase in (None, P.PENDING):
        return _decide_pending(o)
    if o.vm is None:
        return _fail(REASON_VM_GONE, f"VM {o.vm_name!r} was deleted during the migration")
    if o.phase == P.SCHEDULING:
        return _decide_scheduling(o, t)
    if o.phase == P.SCHEDULED:
        return _decide_scheduled(o, t)
    if o.phase == P.TARGET_READY:
        return _decide_target_ready(o, t)
    return _decide_running(o)


# --- progress ------------------------------------------------------------------------------------

def _fail(reason: str, message: str, result: dict[str, Any] | None = None) -> Decision:
    return Decision(Action.FAIL, reason=reason, message=message, result=result)


def decide_selection(o: Observed) -> Decision | None:
    """Fail fast on a request that can never succeed; None when the selection is fine."""
    if o.spec_error:
        return _fail(REASON_INVALID_SPEC, o.spec_error)
    if o.policy_violation:
        return _fail(REASON_POLICY_VIOLATION, o.policy_violation)
    if o.vm is None:
        return _fail(REASON_VM_NOT_FOUND, f"VM {o.vm_name!r} not found in the Migration's namespace: "
                                          "spec.selector.name must name an existing VM")
    if not o.vm.running:
        return _fail(REASON_VM_NOT_RUNNING, f"VM {o.vm_name!r} is not running: start it "
                                            "(spec.running: true) before migrating it")
    if o.competitor:
        return _fail(REASON_VM_BUSY, f"VM {o.vm_name!r} is already being migrated by Migration "
                                     f"{o.competitor!r}: wait for it to finish or delete it")
    if o.contradiction:
        return _fail(REASON_CONTRADICTION, f"VM {o.vm_name!r}: {o.contradiction}")
    return None


def _decide_pending(o: Observed) -> Decision:
    failed = decide_selection(o)
    if failed is not None:
        return failed
    if o.finishing:
        return Decision(Action.NOTHING, reason=f"Migration {o.finishing!r} of this VM is still cleaning up",
                        requeue_after=0.5)
    if not o.admit:
        if o.phase is not None and o.conditions_message == o.capacity_message:
            return Decision(Action.NOTHING, reason="waiting for capacity")
        return Decision(Action.WAIT_CAPACITY, reason=REASON_WAITING_CAPACITY, message=o.capacity_message)
    return Decision(Action.ADMIT)  # from no phase, Pending and Scheduling are recorded in one write


def _target_broken(o: Observed) -> Decision | None:
    tp = o.target_pod
    if tp is None:
        return _fail(REASON_TARGET_FAILED, "the target launcher pod disappeared")
    if tp.deleting or tp.terminated:
        detail = f" (exit code {tp.exit_code})" if tp.exit_code is not None else ""
        return _fail(REASON_TARGET_FAILED, f"target launcher pod {tp.name} ended{detail}: "
                                           f"{tp.termination_message or tp.phase}")
    return None


def _decide_scheduling(o: Observed, t: Timeouts) -> Decision:
    assert o.vm is not None
    if o.vm.migration_uid != o.uid:
        return Decision(Action.MARK_VM_MIGRATING)
    tp = o.target_pod
    if tp is None:
        return Decision(Action.CREATE_TARGET_POD)
    broken = _target_broken(o)
    if broken is not None:
        return broken
    if tp.node:
        return Decision(Action.SET_PHASE, phase=P.SCHEDULED, target_node=tp.node)
    if tp.unschedulable:
        explanation = o.infeasible or tp.unschedulable
        if o.phase_age_s >= t.unschedulable_s:
            return _fail(REASON_UNSCHEDULABLE, f"no node can take VM {o.vm_name!r} after "
                                               f"{int(t.unschedulable_s)}s: {explanation}")
        if o.conditions_message != explanation:
            return Decision(Action.MARK_UNSCHEDULABLE, reason=REASON_UNSCHEDULABLE, message=explanation,
                            requeue_after=t.unschedulable_s - o.phase_age_s)
        return Decision(Action.NOTHING, requeue_after=t.unschedulable_s - o.phase_age_s)
    return _pending_timeout(o, t, "the target launcher pod was not scheduled")


def _pending_timeout(o: Observed, t: Timeouts, what: str, reason: str = REASON_TARGET_TIMEOUT) -> Decision:
    if o.phase_age_s >= t.pending_s:
        return _fail(reason, f"{what} within {int(t.pending_s)}s")
    return Decision(Action.NOTHING, requeue_after=t.pending_s - o.phase_age_s)


def _decide_scheduled(o: Observed, t: Timeouts) -> Decision:
    broken = _target_broken(o)
    if broken is not None:
        return broken
    assert o.target_pod is not None
    if o.target_pod.ready:
        return Decision(Action.SET_PHASE, phase=P.TARGET_READY)
    return _pending_timeout(o, t, f"the target launcher pod on {o.target_node} did not get ready")


def _decide_target_ready(o: Observed, t: Timeouts) -> Decision:
    ap = o.agent_pod
    if ap is not None and (ap.phase != "Pending" or ap.terminated):
        return Decision(Action.SET_PHASE, phase=P.RUNNING)
    broken = _target_broken(o)
    if broken is not None and ap is None:
        return broken  # once the agent exists its outcome decides: it fails if the target is gone
    if ap is None:
        if o.destination_error:
            return _fail(REASON_INVALID_DESTINATION, o.destination_error)
        return Decision(Action.CREATE_AGENT_POD)
    return _pending_timeout(o, t, f"the agent pod {ap.name} did not start", REASON_AGENT_NOT_STARTED)


def outcome_for_agent(code: int, message: str) -> Decision:
    """The agent's exit code and termination message -> Succeed or Fail (one table: api/exitcodes)."""
    outcome = phase_for_exit_code(code)
    result = agent_result(code, message)
    text = str(result.get("message") or "")
    if outcome.phase == PHASE_SUCCEEDED:
        return Decision(Action.SUCCEED, reason=outcome.reason, message=text or "the VM runs on the target node",
                        result=result)
    if not text:
        text = ("the agent pod ended without a result (crashed or killed)"
                if code not in ExitCode.__members__.values() else f"agent exited with {ExitCode(code).name}")
    return _fail(outcome.reason, text, result)


def _guest_moved(o: Observed) -> bool | None:
    """Where the launchers say the guest is: True on the target, False on the source, None unknown."""
    sp, tp = o.source_pod, o.target_pod
    if sp is not None and sp.running and not sp.deleting:
        return False
    if (sp is None or sp.phase == "Succeeded") and tp is not None and tp.running and tp.ready:
        return True
    return None


def _decide_running(o: Observed) -> Decision:
    ap = o.agent_pod
    if ap is not None and ap.exit_code is not None:
        return outcome_for_agent(ap.exit_code, ap.termination_message)
    if ap is not None and ap.terminated:
        return outcome_for_agent(-1, "")  # Failed without a container status: killed before it ran
    if ap is None:
        if o.agent_exit is not None:
            return outcome_for_agent(*o.agent_exit)
        moved = _guest_moved(o)
        if moved is True:
            return Decision(Action.SUCCEED, reason=REASON_MIGRATED,
                            message="the agent pod is gone; the guest runs on the target node")
        if moved is False:
            return _fail(REASON_AGENT_GONE, f"the agent pod disappeared; VM {o.vm_name!r} still runs "
                                            "on its source node")
        return Decision(Action.NOTHING, reason="agent gone, waiting for the launchers to settle",
                        requeue_after=1.0)
    return Decision(Action.NOTHING, reason="agent running")


# --- cancel --------------------------------------------------------------------------------------

def _decide_cancel(o: Observed) -> Decision:
    ap = o.agent_pod
    if ap is not None:
        if ap.exit_code is not None:
            return _cancel_outcome(ap.exit_code, ap.termination_message)
        if ap.terminated:
            return _cancel_outcome(-1, "")
        if not ap.deleting:
            return Decision(Action.DELETE_AGENT_POD, reason="stopping the agent to cancel")
        return Decision(Action.NOTHING, reason="waiting for the agent to abort")
    if o.agent_exit is not None:
        return _cancel_outcome(*o.agent_exit)
    if o.phase == P.RUNNING:
        moved = _guest_moved(o)
        if moved is True:
            return Decision(Action.SUCCEED, reason=REASON_MIGRATED,
                            message="the migration completed before the cancel took effect")
        if moved is None:
            return Decision(Action.NOTHING, reason="agent gone, waiting for the launchers to settle",
                            requeue_after=1.0)
    if o.phase in (None, P.PENDING) and (o.vm is None or o.vm.migration_uid != o.uid):
        return Decision(Action.REMOVE_FINALIZER, reason="cancelled before anything was created")
    return _fail(REASON_CANCELLED, "the Migration was deleted; the VM keeps running on its source node")


def _cancel_outcome(code: int, message: str) -> Decision:
    d = outcome_for_agent(code, message)
    if d.action == Action.SUCCEED:
        return Decision(Action.SUCCEED, reason=d.reason, result=d.result,
                        message="the migration completed before the cancel took effect")
    return _fail(REASON_CANCELLED, "the Migration was deleted; the agent stopped the migration and the VM "
                                   "keeps running on its source node", d.result)


# --- cleanup ---------------------------------------------------------------------------------------

def _decide_cleanup(o: Observed) -> Decision:
    if not o.has_finalizer:
        return Decision(Action.NOTHING, reason="done")  # cleanup finished: never touch anything again
    ap = o.agent_pod
    if ap is not None:
        if not ap.deleting:
            return Decision(Action.DELETE_AGENT_POD)
        return Decision(Action.NOTHING, reason="waiting for the agent pod to go")
    mine = o.vm is not None and o.vm.migration_uid == o.uid and not o.vm.migration_completed
    if o.phase == P.SUCCEEDED:
        if mine:
            return Decision(Action.RECORD_VM_ON_TARGET)
        gone = o.source_pod
    else:
        if mine:
            return Decision(Action.RECORD_VM_ON_SOURCE)
        gone = o.target_pod
    if gone is not None and o.vm is not None and gone.name == o.vm.launcher_pod:
        gone = None  # the pod the VM runs in now is never ours to remove
    if gone is not None:
        if not gone.deleting:
            return Decision(Action.DELETE_SOURCE_POD if o.phase == P.SUCCEEDED else Action.DELETE_TARGET_POD)
        return Decision(Action.NOTHING, reason="waiting for a pod to go")
    if o.has_finalizer:
        return Decision(Action.REMOVE_FINALIZER)
    return Decision(Action.NOTHING, reason="done")


def phase_age(entered: _dt.datetime | None, now: _dt.datetime) -> float:
    """Seconds since `entered` (0 when unknown)."""
    return max((now - entered).total_seconds(), 0.0) if entered is not None else 0.0
