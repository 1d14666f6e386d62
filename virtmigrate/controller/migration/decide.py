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

import dataclasses
import datetime as _dt
import enum
from dataclasses import dataclass
from typing import Any

from virtmigrate.api.constants import FINALIZER_AGENT, MigrationPhase
from virtmigrate.api.exitcodes import OUTCOMES, PHASE_SUCCEEDED, UNKNOWN_OUTCOME, ExitCode, phase_for_exit_code
from virtmigrate.controller.migration.locate import (
    Location,
    Where,
    claim_of,
    confirms,
    guest_on,
    leftover,
    locate,
    silenced,
)
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
REASON_GUEST_LOST = "GuestLost"                        # neither node runs the guest any more
REASON_GUEST_ON_BOTH = "GuestOnBothNodes"              # both nodes run the guest: an admin must choose
REASON_LOCATION_UNKNOWN = "GuestLocationUnknown"       # the nodes' reports did not settle in time
REASON_AGENT_STUCK = "AgentStuck"                      # the agent ran longer than the Running bound
REASON_AGENT_NODE_LOST = "AgentNodeLost"               # (Event) the agent's node stopped answering
REASON_POD_REJECTED = "PodRejected"                    # the API server refused to create a pod of ours
REASON_NO_DESTINATION = "NoDestinationURI"             # the target node has no libvirt URI
REASON_LEFTOVER = "GuestLeftover"                      # (Event) a paused copy was left on the other node
REASON_ORPHANED_JOB = "OrphanedJob"                    # (Event) a job outlived its agent: aborting it
REASON_WITNESS = "LauncherWitness"                     # (Event) a silenced launcher's node gets a witness
BUSY_CONFIRM_S = 2.0  # a competitor seen this soon after the create is looked at again before VMBusy
# Every (phase, reason) a Migration can end with: the controller's own failures and the agent's outcomes.
# virtmigrate_migration_results_total starts each at 0 (MigrationMetrics.initialize), so that
# Prometheus's increase() counts a reason's first ending too (a series that appears at 1 counts 0).
FINISHED_RESULTS = (
    (PHASE_SUCCEEDED, REASON_MIGRATED),
    *((MigrationPhase.FAILED.value, r) for r in (
        REASON_INVALID_SPEC, REASON_POLICY_VIOLATION, REASON_INVALID_DESTINATION, REASON_VM_NOT_FOUND,
        REASON_VM_NOT_RUNNING, REASON_VM_BUSY, REASON_CONTRADICTION, REASON_UNSCHEDULABLE, REASON_TARGET_TIMEOUT,
        REASON_TARGET_FAILED, REASON_AGENT_NOT_STARTED, REASON_AGENT_GONE, REASON_VM_GONE, REASON_CANCELLED,
        REASON_GUEST_LOST, REASON_GUEST_ON_BOTH, REASON_LOCATION_UNKNOWN, REASON_AGENT_STUCK, REASON_POD_REJECTED,
        REASON_NO_DESTINATION)),
    *((o.phase, o.reason) for o in (*OUTCOMES.values(), UNKNOWN_OUTCOME) if o.phase != PHASE_SUCCEEDED),
)
# Failed reasons whose guest is not (verifiably) on the source: the VM says so instead of Running.
LOST_REASONS = frozenset({REASON_GUEST_LOST, REASON_GUEST_ON_BOTH, REASON_LOCATION_UNKNOWN})


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
    FORCE_DELETE_AGENT_POD = "ForceDeleteAgentPod"  # grace 0: the agent did not stop in its grace period
    REMOVE_AGENT_FINALIZER = "RemoveAgentFinalizer"  # the agent's outcome is recorded: let its pod go
    CREATE_ABORT_POD = "CreateAbortPod"    # a short-lived agent that aborts an orphaned migration job
    DELETE_ABORT_POD = "DeleteAbortPod"
    CREATE_WITNESS = "CreateWitness"       # a receive-mode launcher on a silenced side's node (`side`)
    DELETE_WITNESS = "DeleteWitness"       # a witness that died without a word (`pod`): a new one follows
    RECORD_VM_LOST = "RecordVMLost"        # VM status: Failed/Unknown with the reason; never Running
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
    warning: str = ""                       # for SUCCEED / FAIL: an extra Warning Event (REASON_LEFTOVER)
    delete_first: str = ""                  # for REMOVE_FINALIZER: delete this pod by name first
    side: str = ""                          # for CREATE_WITNESS: "source" or "target"
    pod: str = ""                           # for DELETE_SOURCE_POD / DELETE_TARGET_POD / DELETE_WITNESS


@dataclass(frozen=True, slots=True)
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
    running_s: float = 3600.0        # Running this long (the agent stuck, its node gone) -> stop the agent
    agent_grace_s: float = 45.0      # an agent asked to stop still runs this long -> force-deleted
    settle_s: float = 3.0            # an agent ended without proof: the launchers' reports catch up this long
    orphan_job_s: float = 30.0       # a job still runs this long after its agent ended -> aborted
    resolve_s: float = 300.0         # the reports still unsettled this long after the agent -> GuestLocationUnknown


@dataclass(frozen=True, slots=True)
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
    vm: VMState | None = None
    competitor: str = ""                 # another active Migration of the same VM
    age_s: float = float("inf")          # seconds since the Migration was created (metadata.creationTimestamp)
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
    status_reason: str = ""              # status.reason (cleanup: how the VM status is recorded)
    source_node: str = ""                # status.sourceNode
    source_where: Where = Where.UNKNOWN  # what the source launcher says of the guest there (locate.py)
    target_where: Where = Where.ABSENT   # what the target launcher says
    source_mute: bool = False            # the source launcher is silenced (locate.silenced): its witness speaks
    target_mute: bool = False            # the target launcher is silenced, after it was created
    source_witness: PodView | None = None  # the witness launcher on the source node, when one exists
    target_witness: PodView | None = None  # the witness launcher on the target node
    agent_end_age_s: float = 0.0         # seconds since the agent ended (finished, or its pod vanished)
    agent_end_seen_s: float = float("inf")  # seconds since this controller first saw that end (observe.py)
    agent_stop_age_s: float = 0.0        # seconds since the agent pod was asked to stop (deletionTimestamp)
    agent_forced: bool = False           # ... with grace 0 (force-deleted): agent_stop_age_s counts from the force
    abort_pod: PodView | None = None     # the orphaned-job abort pod, when one exists
    destination_error: str = ""          # the target node's libvirt URI is missing or not allowed
    destination_reason: str = ""         # REASON_INVALID_DESTINATION when refused ("" = NoDestinationURI)
    agent_name: str = ""                 # status.agentPod
    agent_node_lost: bool = False        # the agent pod's node stopped answering (podstate.node_lost)
    early_agent: bool = False            # the agent can wait for TargetReady itself (it reads its Migration):
                                         # it is created once the target pod is bound (agent/gate.py)
    entered: frozenset[str] = frozenset()  # every phase the Migration has been in (phaseTransitionTimestamps)


def decide(o: Observed, t: Timeouts = Timeouts()) -> Decision:
    """The next single step for the Migration described by `o`."""
    if o.phase is not None and o.phase.terminal:
        return _decide_cleanup(o, t)
    if o.deleting:
        if not o.has_finalizer:
            return Decision(Action.NOTHING, reason="finalizer already released")
        return _decide_cancel(o, t)
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
    return _decide_running(o, t)


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
    if o.competitor and o.age_s < BUSY_CONFIRM_S:
        # A cache a moment behind may still show a Migration of this VM that has just ended (a back-to-back
        # Migration): look again before failing this one as busy.
        return Decision(Action.NOTHING, reason=f"VM {o.vm_name!r} looks busy with Migration {o.competitor!r}: "
                                               "confirming", requeue_after=BUSY_CONFIRM_S - o.age_s)
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
        if o.vm.migration_uid and not o.vm.migration_completed:
            # Another Migration marked the VM first (e.g. admitted by a previous leader): the VM's mark,
            # written with a resourceVersion precondition, is the compare-and-swap that admits only one.
            return _fail(REASON_VM_BUSY, f"VM {o.vm_name!r} is being migrated by another Migration "
                                         f"(uid {o.vm.migration_uid}): wait for it to finish")
        return Decision(Action.MARK_VM_MIGRATING)
    tp = o.target_pod
    if tp is None:
        if o.contradiction:
            return _fail(REASON_CONTRADICTION, f"VM {o.vm_name!r}: {o.contradiction}")
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
    ap = o.agent_pod
    if ap is not None and ap.terminated:
        # An early agent ended before the target was ready. It waits for TargetReady before it starts the job,
        # so the guest should be untouched, but where it runs is still read from the nodes, never assumed.
        ended = _agent_ended(o)
        assert ended is not None
        return resolve_outcome(o, t, *ended)
    broken = _target_broken(o)
    if broken is not None:
        return broken  # a waiting agent never started the job: cleanup stops it
    assert o.target_pod is not None
    if o.early_agent and ap is None and o.target_pod.node:
        # Its start (process, both libvirt connections) overlaps the target launcher's; it starts the job only
        # once this Migration says TargetReady.
        if o.destination_error:
            return _fail(o.destination_reason or REASON_NO_DESTINATION, o.destination_error)
        return Decision(Action.CREATE_AGENT_POD)
    facts = o.target_pod.domain
    if facts is not None and facts.reachable:
        return Decision(Action.SET_PHASE, phase=P.TARGET_READY)  # its launcher reports, from its libvirt
    return _pending_timeout(o, t, f"the target launcher pod on {o.target_node} did not report that it "
                                  "waits for the guest (its annotation virtmigrate.kubevirt.io/domain)")


def _decide_target_ready(o: Observed, t: Timeouts) -> Decision:
    ap = o.agent_pod
    if ap is not None and (ap.phase != "Pending" or ap.terminated):
        return Decision(Action.SET_PHASE, phase=P.RUNNING)
    broken = _target_broken(o)
    if broken is not None and ap is None:
        return broken  # once the agent exists its outcome decides: it fails if the target is gone
    if ap is None:
        if o.destination_error:
            return _fail(o.destination_reason or REASON_NO_DESTINATION, o.destination_error)
        return Decision(Action.CREATE_AGENT_POD)
    return _pending_timeout(o, t, f"the agent pod {ap.name} did not start", REASON_AGENT_NOT_STARTED)


# --- the agent's end: its claim, checked against the nodes' facts -------------------------------------

def _agent_words(code: int | None, message: str) -> str:
    text = str(agent_result(code, message).get("message") or "") if code is not None else ""
    if text:
        return text
    if code is None:
        return "the agent pod ended without a result (crashed, killed or removed)"
    if code in ExitCode.__members__.values():
        return f"the agent exited with {ExitCode(code).name}"
    return f"the agent pod ended with exit code {code} and no result (crashed or killed)"


def _agent_ended(o: Observed) -> tuple[int | None, str] | None:
    """(exit code, or None when it left none; its termination message) once the agent has ended — or has
    written its outcome on the Migration (status.agentOutcome), its job over and its exit a moment away; None
    while it runs. A vanished agent pod (its finalizer removed by hand) counts as ended without a word."""
    ap = o.agent_pod
    if ap is not None:
        if ap.exit_code is not None:
            return ap.exit_code, ap.termination_message
        if ap.terminated:
            return None, ""
    if o.agent_exit is not None:
        return o.agent_exit  # remembered from its pod, or the claim it wrote on the Migration as its job ended
    return None if ap is not None else (None, "")


def resolve_outcome(o: Observed, t: Timeouts, code: int | None, message: str, *, cancelled: bool = False) -> Decision:
    """Succeeded or Failed from where the guest runs — the launchers' facts — with the agent's claim as
    the reason, never the proof. A claim the facts confirm decides at once; otherwise the reports get
    `settle_s` to catch up with the agent's end, an orphaned job is aborted after `orphan_job_s`, and facts
    still unsettled after `resolve_s` fail the Migration as GuestLocationUnknown."""
    confirmed_at = confirms(claim_of(code), o.source_where, o.target_where)
    confirmed = confirmed_at is not None
    loc = confirmed_at or locate(o.source_where, o.target_where)
    if not confirmed and loc == Location.UNSETTLED:
        witness = _witness_needed(o)
        if witness is not None:
            return witness
    if not confirmed:
        settled_for = min(o.agent_end_age_s, o.agent_end_seen_s)  # reports held up with the agent's status
        if settled_for < t.settle_s:
            return Decision(Action.NOTHING, reason="agent ended: waiting for the launchers' reports to settle",
                            requeue_after=t.settle_s - settled_for)
        if loc == Location.UNSETTLED and o.agent_end_age_s >= t.orphan_job_s:
            # Long after the agent: one side runs the guest with no job, the other still shows a job or
            # cannot say. libvirt runs a guest on the target only once the source handed it over, and leaves
            # the source running only when it did not: the running side is where the guest is.
            if o.source_where == Where.RUNNING and o.target_where in (Where.MIGRATING, Where.UNKNOWN):
                loc = Location.SOURCE
            elif o.target_where == Where.RUNNING and o.source_where == Where.UNKNOWN:
                loc = Location.TARGET
        if loc == Location.UNSETTLED:
            if o.source_where == Where.MIGRATING and o.agent_end_age_s >= t.orphan_job_s and o.abort_pod is None:
                return Decision(Action.CREATE_ABORT_POD, reason=REASON_ORPHANED_JOB,
                                message=f"the migration job of VM {o.vm_name!r} still runs on node {o.source_node} "
                                        f"{int(o.agent_end_age_s)}s after its agent ended: aborting it")
            if o.agent_end_age_s >= t.resolve_s:
                return _fail(REASON_LOCATION_UNKNOWN,
                             f"{_agent_words(code, message)}; after {int(t.resolve_s)}s the launchers still do "
                             f"not tell where VM {o.vm_name!r} runs (source {o.source_where}, target "
                             f"{o.target_where}): check the nodes' libvirt")
            return Decision(Action.NOTHING, reason=f"locating the guest: source {o.source_where}, "
                                                   f"target {o.target_where}", requeue_after=1.0)
    return _by_location(o, loc, code, message, confirmed=confirmed, cancelled=cancelled)


def _witness_needed(o: Observed) -> Decision | None:
    """A side whose launcher is silenced gets a witness — a receive-mode launcher bound to that node, which
    reports what its libvirt holds and holds the guest if it runs there (it never starts one). A witness
    that died without a word is replaced in turn. None when every side can speak."""
    for side, mute, witness, node in (("source", o.source_mute, o.source_witness, o.source_node),
                                      ("target", o.target_mute, o.target_witness, o.target_node)):
        if not mute or not node:
            continue
        if witness is None:
            return Decision(Action.CREATE_WITNESS, side=side, reason=REASON_WITNESS,
                            message=f"the {side} launcher of VM {o.vm_name!r} on node {node} ended without "
                                    "saying whether the guest runs there: a witness launcher on that node "
                                    "reports what its libvirt holds, and keeps the guest if it runs there")
        if silenced(witness):
            if not witness.deleting:
                return Decision(Action.DELETE_WITNESS, pod=witness.name,
                                message=f"witness launcher pod {witness.name} on node {node} ended without a "
                                        "report: replacing it")
            return Decision(Action.NOTHING, reason="waiting for a dead witness pod to go", requeue_after=1.0)
    return None


def _by_location(o: Observed, loc: Location, code: int | None, message: str, *, confirmed: bool,
                 cancelled: bool) -> Decision:
    result = agent_result(code, message) if code is not None else None
    words = _agent_words(code, message)
    left = leftover(loc, o.source_where, o.target_where)
    warning = ""
    if left == "source":  # the guest runs on the target: what libvirt's confirm would have removed
        warning = (f"a paused copy of VM {o.vm_name!r} was left on the source node (the guest runs on the target: "
                   "the source's libvirt did not finish the job's confirm step); its launcher pod is removed, "
                   "which destroys and undefines that copy, as the confirm step would have")
    elif left:
        if any(p is not None and p.keeps_persistent_copy for p in (o.target_pod, o.target_witness)):
            warning = (f"a paused, persistent copy of VM {o.vm_name!r} was left on the {left} node: it is kept "
                       "with its launcher pod (only a non-persistent leftover is destroyed); delete that pod to "
                       "remove it")
        else:
            warning = f"a paused copy of VM {o.vm_name!r} was left on the {left} node; its launcher pod is removed"
    if loc == Location.TARGET:
        how = ("the agent verified it and the target node's launcher reports the guest running" if confirmed
               else f"{words}; the target node's launcher reports the guest running and the source node "
                    "has none: the migration completed")
        if cancelled:
            how = f"the migration completed before the cancel took effect ({how})"
        return Decision(Action.SUCCEED, reason=REASON_MIGRATED, message=how, result=result, warning=warning)
    if loc == Location.SOURCE:
        if cancelled:
            reason = REASON_CANCELLED
        elif code == ExitCode.SUCCEEDED:
            reason = phase_for_exit_code(ExitCode.VERIFICATION_FAILED).reason  # claimed success, facts disagree
        elif code is None:
            reason = REASON_AGENT_GONE if o.agent_pod is None else phase_for_exit_code(-1).reason
        else:
            reason = phase_for_exit_code(code).reason
        suffix = "the source node's launcher reports the guest running there"
        text = ("the Migration was deleted; " if cancelled else "") + f"{words}; {suffix}"
        return Decision(Action.FAIL, reason=reason, message=text, result=result, warning=warning)
    if loc == Location.NEITHER:
        return _fail(REASON_GUEST_LOST, f"{words}; neither the source node {o.source_node} nor the target node "
                                        f"{o.target_node} runs VM {o.vm_name!r} any more", result)
    return _fail(REASON_GUEST_ON_BOTH, f"{words}; both node {o.source_node} and node {o.target_node} run VM "
                                       f"{o.vm_name!r}: both launcher pods are kept for an admin to choose", result)


def outcome_for_agent(code: int, message: str) -> Decision:
    """What the agent's exit code alone would say (the claim; decide() confirms it with the facts)."""
    outcome = phase_for_exit_code(code)
    result = agent_result(code, message)
    text = str(result.get("message") or "") or _agent_words(code, message)
    if outcome.phase == PHASE_SUCCEEDED:
        return Decision(Action.SUCCEED, reason=outcome.reason, message=text, result=result)
    return _fail(outcome.reason, text, result)


def _stop_stuck_agent(o: Observed, t: Timeouts, *, cancelling: bool) -> Decision:
    ap = o.agent_pod
    assert ap is not None
    if not ap.deleting:
        if cancelling:
            return Decision(Action.DELETE_AGENT_POD, reason="stopping the agent to cancel")
        if o.agent_node_lost and o.phase_age_s < t.running_s:
            return Decision(Action.DELETE_AGENT_POD, reason=REASON_AGENT_NODE_LOST,
                            message=f"node {ap.node} of agent pod {ap.name} stopped answering: its status will "
                                    "not change; stopping it, then the outcome is read from the nodes")
        return Decision(Action.DELETE_AGENT_POD, reason=REASON_AGENT_STUCK,
                        message=f"the agent ran for {int(o.phase_age_s)}s, over the {int(t.running_s)}s bound: "
                                "stopping it (it aborts the job)")
    if o.agent_forced:
        if o.agent_stop_age_s >= t.agent_grace_s:
            # Force-deleted a grace period ago and still not ended: its node is gone or its kubelet dead. The pod
            # keeps its finalizer, so the outcome is resolved from the launchers as for an agent that died.
            return resolve_outcome(dataclasses.replace(o, agent_end_age_s=o.agent_stop_age_s - t.agent_grace_s),
                                   t, None, "", cancelled=cancelling)
        return Decision(Action.NOTHING, reason="waiting for the force-deleted agent to end",
                        requeue_after=t.agent_grace_s - o.agent_stop_age_s)
    if o.agent_stop_age_s >= t.agent_grace_s:
        return Decision(Action.FORCE_DELETE_AGENT_POD, requeue_after=t.agent_grace_s,
                        message=f"agent pod {ap.name} did not stop within {int(t.agent_grace_s)}s: force-deleting it")
    return Decision(Action.NOTHING, reason="waiting for the agent to stop",
                    requeue_after=t.agent_grace_s - o.agent_stop_age_s)


def _decide_running(o: Observed, t: Timeouts) -> Decision:
    ended = _agent_ended(o)
    if ended is not None:
        return resolve_outcome(o, t, *ended)
    if o.phase_age_s >= t.running_s or (o.agent_pod is not None and (o.agent_pod.deleting or o.agent_node_lost)):
        return _stop_stuck_agent(o, t, cancelling=False)
    return Decision(Action.NOTHING, reason="agent running", requeue_after=t.running_s - o.phase_age_s)


# --- cancel --------------------------------------------------------------------------------------

def _decide_cancel(o: Observed, t: Timeouts) -> Decision:
    ap = o.agent_pod
    if ap is not None and not ap.terminated:
        return _stop_stuck_agent(o, t, cancelling=True)
    if ap is not None or o.agent_exit is not None or o.phase == P.RUNNING:
        ended = _agent_ended(o)
        assert ended is not None
        return resolve_outcome(o, t, *ended, cancelled=True)
    if o.phase in (None, P.PENDING) and (o.vm is None or o.vm.migration_uid != o.uid):
        return Decision(Action.REMOVE_FINALIZER, reason="cancelled before anything was created")
    return _fail(REASON_CANCELLED, "the Migration was deleted; the VM keeps running on its source node")


# --- cleanup ---------------------------------------------------------------------------------------

def _decide_cleanup(o: Observed, t: Timeouts) -> Decision:
    if not o.has_finalizer:
        return Decision(Action.NOTHING, reason="done")  # cleanup finished: never touch anything again
    ap = o.agent_pod
    if ap is not None:
        if not ap.deleting:
            return Decision(Action.DELETE_AGENT_POD)
        if FINALIZER_AGENT in ap.finalizers:
            return Decision(Action.REMOVE_AGENT_FINALIZER)  # the outcome is on the Migration now
        return Decision(Action.NOTHING, reason="waiting for the agent pod to go")
    if o.abort_pod is not None:
        if not o.abort_pod.deleting:
            return Decision(Action.DELETE_ABORT_POD)
        return Decision(Action.NOTHING, reason="waiting for the abort pod to go")
    mine = o.vm is not None and o.vm.migration_uid == o.uid and not o.vm.migration_completed
    if mine:
        if o.phase == P.SUCCEEDED:
            return Decision(Action.RECORD_VM_ON_TARGET, pod=holder(o, "target"))
        if o.status_reason in LOST_REASONS:
            return Decision(Action.RECORD_VM_LOST)
        return Decision(Action.RECORD_VM_ON_SOURCE, pod=holder(o, "source"))
    if o.status_reason not in LOST_REASONS:  # where the guest is was not established: an admin decides
        for pod, action in _leftover_pods(o):
            if o.vm is not None and pod.name == o.vm.launcher_pod:
                continue  # the pod the VM runs in now is never ours to remove
            where = guest_on(pod)
            if where == Where.RUNNING and not pod.terminated and o.phase_age_s < t.orphan_job_s:
                # The outcome is established: a losing side that still shows the guest running is a report
                # that has not caught up yet (its launcher may have died just now, its pod not yet marked so).
                # Look again, bounded, before keeping it for good.
                return Decision(Action.NOTHING, reason=f"waiting for pod {pod.name}'s report to settle",
                                requeue_after=1.0)
            completed_source = o.phase == P.SUCCEEDED and action == Action.DELETE_SOURCE_POD
            if where == Where.RUNNING or (where == Where.PAUSED and pod.keeps_persistent_copy
                                          and not completed_source):
                # Whatever the phase says, a pod whose node runs the guest is never removed. (A job still
                # shown on the losing side is a leftover: the outcome was established with the guest running
                # elsewhere, and a launcher stopped mid-job waits for the job's end before it exits.) Nor is
                # one holding a paused, persistent copy a failed migration left on its target: libvirt destroys
                # only non-persistent leftovers there. A migration that succeeded is another matter: the
                # guest runs on the target, and libvirt's confirm step kills the source's paused copy and
                # undefines it (VIR_MIGRATE_UNDEFINE_SOURCE); when the source's libvirtd died before that
                # step, removing the source launcher pod finishes it (chaos seed 11 round 22, CI).
                continue
            if not pod.deleting:
                return Decision(action, pod=pod.name)
            return Decision(Action.NOTHING, reason=f"waiting for pod {pod.name} to go")
    if (o.agent_name and P.SCHEDULED.value in o.entered and P.RUNNING.value not in o.entered
            and o.phase == P.FAILED):
        # Failed (e.g. cancelled) right after the agent's create (from Scheduled on, for an early agent): the
        # cache may not show the pod yet.
        return Decision(Action.REMOVE_FINALIZER, delete_first=o.agent_name)
    return Decision(Action.REMOVE_FINALIZER)


def holder(o: Observed, side: str) -> str:
    """The launcher pod that holds the guest on `side` once the outcome is known: the side's witness when its
    launcher was silenced and a witness reported, else the side's launcher ("" for a source that keeps the
    VM's recorded pod)."""
    mute, witness = (o.target_mute, o.target_witness) if side == "target" else (o.source_mute, o.source_witness)
    if mute and witness is not None:
        return witness.name
    if side == "target":
        return o.target_pod.name if o.target_pod is not None else ""
    return ""


def _leftover_pods(o: Observed) -> list[tuple[PodView, Action]]:
    """The launcher pods a finished Migration removes: the losing side's launcher and witness, and the
    winning side's silenced launcher when its witness holds the guest now. Both sides' pods are kept when
    both nodes run the guest."""
    src = [p for p in (o.source_pod, o.source_witness) if p is not None]
    tgt = [p for p in (o.target_pod, o.target_witness) if p is not None]
    if o.phase == P.SUCCEEDED:
        losing, keep = [(p, Action.DELETE_SOURCE_POD) for p in src], holder(o, "target")
        winning = [(p, Action.DELETE_TARGET_POD) for p in tgt if p.name != keep and o.target_mute]
        return losing + winning
    if o.status_reason == REASON_GUEST_ON_BOTH:
        return []
    keep = holder(o, "source")
    # The source's silenced launcher, once its witness holds the guest (it may be a former target, which the VM
    # controller leaves to the Migration that made it).
    dead_source = [(p, Action.DELETE_SOURCE_POD) for p in src if keep and p.name != keep and o.source_mute]
    return [(p, Action.DELETE_TARGET_POD) for p in tgt] + dead_source


def decide_orphans(pods: list[PodView]) -> list[tuple[Action, PodView]]:
    """The agent and abort pods of a Migration that no longer exists (they appeared after its cleanup, or
    it was force-removed): delete each, and let the agent-outcome finalizer go — nobody will read it."""
    out: list[tuple[Action, PodView]] = []
    for pod in pods:
        if not pod.deleting:
            out.append((Action.DELETE_AGENT_POD, pod))
        if FINALIZER_AGENT in pod.finalizers:
            out.append((Action.REMOVE_AGENT_FINALIZER, pod))
    return out


def phase_age(entered: _dt.datetime | None, now: _dt.datetime) -> float:
    """Seconds since `entered` (0 when unknown)."""
    return max((now - entered).total_seconds(), 0.0) if entered is not None else 0.0
