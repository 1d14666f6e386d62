"""The Migration phase machine, decision by decision, with literals.

The outcome of an agent (its claim, checked against where the launchers say the guest runs) has its own
file, test_migration_outcome.py; the literal reports and pods are in migration_literals.py.
"""

from __future__ import annotations

import pytest

from tests.unit.migration_literals import (
    AGENT_RUN,
    JOB_OUT,
    PAUSED_COPY,
    PAUSED_PERSISTENT,
    RUNS,
    SRC,
    SRC_LEFT,
    TGT_BOUND,
    TGT_PENDING,
    TGT_RUNS,
    TGT_WAITING,
    UID,
    UNREACHABLE,
    VM_OURS,
    VM_RECORDED,
    VM_RUNNING,
    agent_exited,
    obs,
    src,
    tgt,
)
from virtmigrate.api.constants import FINALIZER_AGENT
from virtmigrate.api.constants import MigrationPhase as P
from virtmigrate.controller.migration.decide import (
    Action,
    Observed,
    Timeouts,
    VMState,
    decide,
)
from virtmigrate.controller.podstate import PodView

SUCCESS_MSG = '{"outcome": "succeeded", "durationSeconds": 1.5, "downtimeMs": 12, "mode": "pre-copy"}'
T = Timeouts()


@pytest.mark.parametrize(("o", "action", "reason"), [
    pytest.param(obs(has_finalizer=False), Action.ADD_FINALIZER, "", id="finalizer-first"),
    pytest.param(obs(), Action.ADMIT, "", id="new-admitted-at-once"),
    pytest.param(obs(admit=False, capacity_message="5 running"), Action.WAIT_CAPACITY, "WaitingForCapacity",
                 id="new-waits-in-pending"),
    pytest.param(obs(spec_error="spec.selector.name: required"), Action.FAIL, "InvalidSpec", id="bad-spec"),
    pytest.param(obs(vm=None), Action.FAIL, "VMNotFound", id="no-vm"),
    pytest.param(obs(vm=VMState(running=False)), Action.FAIL, "VMNotRunning", id="vm-stopped"),
    pytest.param(obs(competitor="other"), Action.FAIL, "VMBusy", id="busy"),
    pytest.param(obs(contradiction="zone: VM requires a, Migration requires b"), Action.FAIL,
                 "ConstraintContradiction", id="contradiction"),
    pytest.param(obs(phase=P.PENDING), Action.ADMIT, "", id="admit"),
    pytest.param(obs(phase=P.PENDING, admit=False, capacity_message="5 running"), Action.WAIT_CAPACITY,
                 "WaitingForCapacity", id="wait-capacity"),
    pytest.param(obs(phase=P.PENDING, admit=False, capacity_message="5 running", conditions_message="5 running"),
                 Action.NOTHING, "waiting for capacity", id="wait-capacity-already-said"),
])
def test_pending(o: Observed, action: Action, reason: str) -> None:
    d = decide(o)
    assert (d.action, d.reason) == (action, reason)


def test_failure_messages_name_the_vm() -> None:
    for o in (obs(vm=None), obs(vm=VMState(running=False)), obs(competitor="first"),
              obs(contradiction="key zone: VM requires zone=a; Migration requires zone=b")):
        assert "'testvm'" in decide(o).message
    assert "'first'" in decide(obs(competitor="first")).message
    assert "zone" in decide(obs(contradiction="key zone: VM requires zone=a; Migration requires zone=b")).message


@pytest.mark.parametrize(("o", "action", "extra"), [
    pytest.param(obs(phase=P.SCHEDULING), Action.MARK_VM_MIGRATING, {}, id="mark-vm"),
    pytest.param(obs(phase=P.SCHEDULING, vm=VM_OURS), Action.CREATE_TARGET_POD, {}, id="create-target"),
    pytest.param(obs(phase=P.SCHEDULING, vm=VM_OURS, target_pod=TGT_PENDING), Action.NOTHING, {},
                 id="wait-bind"),
    pytest.param(obs(phase=P.SCHEDULING, vm=VM_OURS, target_pod=TGT_BOUND), Action.SET_PHASE,
                 {"phase": P.SCHEDULED, "target_node": "node1"}, id="bound"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND), Action.NOTHING, {},
                 id="wait-for-the-target-report"),
    # The cue is the target launcher's report from its node's libvirt, not the pod's readiness (a
    # receive-mode launcher is ready only once the guest runs there).
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_WAITING), Action.SET_PHASE,
                 {"phase": P.TARGET_READY}, id="target-reports-waiting"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=PodView(name="t", node="node1", phase="Running",
                                                                      ready=True)),
                 Action.NOTHING, {}, id="ready-pod-without-report-waits"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=tgt(UNREACHABLE)), Action.NOTHING, {},
                 id="target-libvirt-unreachable-waits"),
    pytest.param(obs(phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_WAITING), Action.CREATE_AGENT_POD, {},
                 id="create-agent"),
    pytest.param(obs(phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_WAITING,
                     destination_error="node node1 has no libvirt-uri annotation and no InternalIP"),
                 Action.FAIL, {"reason": "NoDestinationURI",
                               "message": "node node1 has no libvirt-uri annotation and no InternalIP"},
                 id="no-destination"),
    pytest.param(obs(phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_WAITING, agent_pod=AGENT_RUN),
                 Action.SET_PHASE, {"phase": P.RUNNING}, id="agent-running"),
    pytest.param(obs(phase=P.RUNNING, vm=VM_OURS, source_pod=src(JOB_OUT), target_pod=TGT_WAITING,
                     agent_pod=AGENT_RUN), Action.NOTHING, {}, id="migrating"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=None), Action.FAIL,
                 {"reason": "TargetPodFailed"}, id="target-vanished"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS,
                     target_pod=PodView(name="t", node="node1", phase="Failed", exit_code=3)),
                 Action.FAIL, {"reason": "TargetPodFailed"}, id="target-failed"),
    pytest.param(obs(phase=P.SCHEDULING, vm=None), Action.FAIL, {"reason": "VMDeleted"}, id="vm-deleted"),
    # Another Migration marked the VM first (say, admitted by a previous leader): this one never touches it.
    pytest.param(obs(phase=P.SCHEDULING, vm=VMState(running=True, node="node0", migration_uid="other-uid")),
                 Action.FAIL, {"reason": "VMBusy"}, id="vm-marked-by-another"),
    pytest.param(obs(phase=P.SCHEDULING, vm=VMState(running=True, node="node0", migration_uid="other-uid",
                                                    migration_completed=True)),
                 Action.MARK_VM_MIGRATING, {}, id="vm-marked-by-a-finished-one"),
    # A contradiction found when the target pod is about to be made fails the Migration from the decision.
    pytest.param(obs(phase=P.SCHEDULING, vm=VM_OURS, contradiction="zone: VM requires a, Migration requires b"),
                 Action.FAIL, {"reason": "ConstraintContradiction"}, id="contradiction-at-target-creation"),
])
def test_progress(o: Observed, action: Action, extra: dict[str, object]) -> None:
    d = decide(o)
    assert d.action == action
    for k, v in extra.items():
        assert getattr(d, k) == v


def test_unschedulable_condition_then_timeout() -> None:
    tp = PodView(name="t", unschedulable="0/3 nodes are available: 3 node(s) didn't match")
    o = obs(phase=P.SCHEDULING, vm=VM_OURS, target_pod=tp, infeasible="0/3 nodes are available: 1 is the source, "
            "2 didn't match node selector (zone).", phase_age_s=10)
    d = decide(o, Timeouts(unschedulable_s=300))
    assert d.action == Action.MARK_UNSCHEDULABLE
    assert "didn't match node selector (zone)" in d.message
    assert d.requeue_after == 290
    later = obs(phase=P.SCHEDULING, vm=VM_OURS, target_pod=tp, infeasible=o.infeasible, phase_age_s=300,
                conditions_message=o.infeasible)
    d2 = decide(later, Timeouts(unschedulable_s=300))
    assert (d2.action, d2.reason) == (Action.FAIL, "Unschedulable")
    assert "(zone)" in d2.message


def test_the_busy_and_contradiction_failures_name_the_vm_and_the_cause() -> None:
    busy = decide(obs(phase=P.SCHEDULING, vm=VMState(running=True, node="node0", migration_uid="other-uid")))
    assert "'testvm'" in busy.message and "other-uid" in busy.message
    contra = decide(obs(phase=P.SCHEDULING, vm=VM_OURS, contradiction="zone: VM requires a, Migration requires b"))
    assert "'testvm'" in contra.message and "zone: VM requires a" in contra.message


def test_pending_target_times_out_after_other_timeout() -> None:
    o = obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND, phase_age_s=899)
    assert decide(o, Timeouts(pending_s=900)).action == Action.NOTHING
    o2 = obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND, phase_age_s=900)
    assert decide(o2, Timeouts(pending_s=900)).reason == "TargetNotReady"


# An exit code is the agent's claim; the launchers' facts confirm it (the outcome then comes at once) or,
# for a code that claims nothing, decide alone once the reports had `settle_s` to catch up.
@pytest.mark.parametrize(("code", "message", "guest", "reason", "at_once"), [
    pytest.param(0, SUCCESS_MSG, "target", "Migrated", True, id="0-succeeded"),
    pytest.param(2, "", "source", "InvalidAgentArguments", True, id="2-invalid-args"),
    pytest.param(10, "", "source", "SourceUnreachable", True, id="10-source"),
    pytest.param(11, '{"outcome": "DESTINATION_UNREACHABLE", "message": "cannot connect"}', "source",
                 "DestinationUnreachable", True, id="11-destination"),
    pytest.param(12, "", "source", "DomainNotFound", False, id="12-domain"),
    pytest.param(20, "", "source", "MigrationFailed", True, id="20-libvirt"),
    pytest.param(21, "", "source", "CompletionTimeout", True, id="21-timeout"),
    pytest.param(22, "", "source", "NoProgress", True, id="22-no-progress"),
    pytest.param(23, "", "source", "Cancelled", True, id="23-cancelled"),
    pytest.param(24, "", "source", "VerificationFailed", False, id="24-verification"),
    pytest.param(137, "Killed", "source", "AgentFailed", False, id="137-killed"),
])
def test_agent_exit_code_to_phase(code: int, message: str, guest: str, reason: str, at_once: bool) -> None:
    pods = ({"source_pod": SRC_LEFT, "target_pod": TGT_RUNS} if guest == "target"
            else {"source_pod": SRC, "target_pod": TGT_WAITING})
    action = Action.SUCCEED if guest == "target" else Action.FAIL
    o = obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=agent_exited(code, message), **pods)
    first = decide(o, T)
    if at_once:
        assert (first.action, first.reason) == (action, reason)
    else:
        assert first.action == Action.NOTHING and first.requeue_after == T.settle_s
    settled = decide(obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=agent_exited(code, message),
                         agent_end_age_s=T.settle_s, **pods), T)
    assert (settled.action, settled.reason) == (action, reason)
    assert settled.result is not None and settled.result["exitCode"] == code


def test_success_result_carries_agent_figures() -> None:
    agent = agent_exited(0, SUCCESS_MSG)
    d = decide(obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_LEFT, target_pod=TGT_RUNS, agent_pod=agent))
    assert d.action == Action.SUCCEED
    assert d.result == {"exitCode": 0, "outcome": "succeeded", "durationSeconds": 1.5, "downtimeMs": 12,
                        "mode": "pre-copy", "message": ""}


def test_agent_gone_without_outcome_uses_launcher_evidence() -> None:
    """The agent pod vanished (its finalizer removed by hand) and no exit code is remembered: the launchers'
    reports decide, after the settle wait."""
    moved = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_LEFT, target_pod=TGT_RUNS)
    assert decide(moved, T).action == Action.NOTHING  # the reports may lag the agent's end
    moved_later = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_LEFT, target_pod=TGT_RUNS,
                      agent_end_age_s=T.settle_s)
    assert decide(moved_later, T).action == Action.SUCCEED
    stayed = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING, agent_end_age_s=T.settle_s)
    assert (decide(stayed, T).action, decide(stayed, T).reason) == (Action.FAIL, "AgentPodGone")
    remembered = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_LEFT, target_pod=TGT_RUNS,
                     agent_exit=(0, SUCCESS_MSG))
    assert decide(remembered, T).action == Action.SUCCEED  # a remembered claim the facts confirm: at once


# --- cancel in every phase -------------------------------------------------------------------------

@pytest.mark.parametrize(("o", "action", "reason"), [
    pytest.param(obs(deleting=True, phase=None), Action.REMOVE_FINALIZER, "cancelled before anything was created",
                 id="new"),
    pytest.param(obs(deleting=True, phase=P.PENDING), Action.REMOVE_FINALIZER,
                 "cancelled before anything was created", id="pending"),
    pytest.param(obs(deleting=True, phase=P.SCHEDULING, vm=VM_OURS, target_pod=TGT_PENDING), Action.FAIL,
                 "Cancelled", id="scheduling"),
    pytest.param(obs(deleting=True, phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND), Action.FAIL,
                 "Cancelled", id="scheduled"),
    pytest.param(obs(deleting=True, phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_WAITING), Action.FAIL,
                 "Cancelled", id="target-ready"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=src(JOB_OUT), target_pod=TGT_WAITING,
                     agent_pod=AGENT_RUN),
                 Action.DELETE_AGENT_POD, "stopping the agent to cancel", id="running-stop-agent"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=src(JOB_OUT), target_pod=TGT_WAITING,
                     agent_pod=PodView(name="a", phase="Running", deleting=True), agent_stop_age_s=1.0),
                 Action.NOTHING, "waiting for the agent to stop", id="running-agent-stopping"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING,
                     agent_pod=agent_exited(23, deleting=True)),
                 Action.FAIL, "Cancelled", id="running-agent-cancelled"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_LEFT, target_pod=TGT_RUNS,
                     agent_pod=agent_exited(0, deleting=True)),
                 Action.SUCCEED, "Migrated", id="running-completed-before-cancel"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING,
                     agent_exit=(23, "")), Action.FAIL, "Cancelled", id="running-agent-gone-exit-known"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING,
                     agent_end_age_s=T.settle_s),
                 Action.FAIL, "Cancelled", id="running-agent-gone-guest-on-source"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING),
                 Action.NOTHING, "agent ended: waiting for the launchers' reports to settle",
                 id="running-agent-gone-reports-settle-first"),
    pytest.param(obs(deleting=True, has_finalizer=False, phase=P.RUNNING), Action.NOTHING,
                 "finalizer already released", id="released"),
])
def test_cancel(o: Observed, action: Action, reason: str) -> None:
    d = decide(o)
    assert (d.action, d.reason) == (action, reason)


# --- cleanup -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("o", "action"), [
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_OURS, agent_pod=agent_exited(0, finalizers=(FINALIZER_AGENT,))),
                 Action.DELETE_AGENT_POD, id="ok-delete-agent"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_OURS,
                     agent_pod=agent_exited(0, deleting=True, finalizers=(FINALIZER_AGENT,))),
                 Action.REMOVE_AGENT_FINALIZER, id="ok-release-agent-outcome"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_OURS, agent_pod=agent_exited(0, deleting=True)),
                 Action.NOTHING, id="ok-wait-agent-gone"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_OURS, source_pod=SRC_LEFT), Action.RECORD_VM_ON_TARGET, id="ok-vm"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True),
                     source_pod=SRC_LEFT), Action.DELETE_SOURCE_POD, id="ok-delete-source"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True),
                     source_pod=src(PAUSED_COPY)), Action.DELETE_SOURCE_POD, id="ok-delete-paused-leftover"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True),
                     source_pod=PodView(name="s", deleting=True)), Action.NOTHING, id="ok-wait-source"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True)),
                 Action.REMOVE_FINALIZER, id="ok-release"),
    pytest.param(obs(phase=P.FAILED, vm=VM_OURS, target_pod=TGT_WAITING), Action.RECORD_VM_ON_SOURCE,
                 id="failed-vm"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING, target_pod=TGT_WAITING), Action.DELETE_TARGET_POD,
                 id="failed-delete-target"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING), Action.REMOVE_FINALIZER, id="failed-release"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING, deleting=True), Action.REMOVE_FINALIZER,
                 id="failed-deleted-release"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING, has_finalizer=False, target_pod=TGT_WAITING), Action.NOTHING,
                 id="done-means-done"),
])
def test_cleanup(o: Observed, action: Action) -> None:
    assert decide(o).action == action


VM_BACK = VMState(running=True, node="node0", launcher_pod="virt-launcher-testvm-aaaaa", migration_uid=UID,
                  migration_completed=True)   # the VM's status already recorded this Migration's end


@pytest.mark.parametrize(("o", "action"), [
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_RECORDED, source_pod=SRC, phase_age_s=T.orphan_job_s),
                 Action.REMOVE_FINALIZER, id="succeeded-but-the-source-runs-the-guest"),
    # A job still shown on the losing side is a leftover (the launcher, stopped mid-job, waits for its end).
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_RECORDED, source_pod=src(JOB_OUT)), Action.DELETE_SOURCE_POD,
                 id="succeeded-a-job-still-shown-on-the-source-is-a-leftover"),
    pytest.param(obs(phase=P.FAILED, vm=VM_BACK, target_pod=TGT_RUNS, status_reason="MigrationFailed",
                     phase_age_s=T.orphan_job_s), Action.REMOVE_FINALIZER, id="failed-but-the-target-runs-the-guest"),
    pytest.param(obs(phase=P.FAILED, vm=VM_BACK, source_pod=SRC, target_pod=TGT_RUNS,
                     status_reason="GuestOnBothNodes"), Action.REMOVE_FINALIZER, id="both-kept-for-an-admin"),
    # the same Migrations, with the facts saying the pod's node has no guest: the pod goes
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_RECORDED, source_pod=SRC_LEFT), Action.DELETE_SOURCE_POD,
                 id="succeeded-source-gone"),
    pytest.param(obs(phase=P.FAILED, vm=VM_BACK, target_pod=TGT_WAITING, status_reason="MigrationFailed"),
                 Action.DELETE_TARGET_POD, id="failed-target-empty"),
    pytest.param(obs(phase=P.FAILED, vm=VM_BACK, target_pod=tgt(PAUSED_COPY), status_reason="MigrationFailed"),
                 Action.DELETE_TARGET_POD, id="failed-target-paused-leftover"),
    # libvirt's rule for a failed migration's target: only a paused, non-persistent leftover is destroyed; a
    # succeeded one's source copy goes, persistent or not (libvirt's confirm step kills and undefines it).
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_RECORDED, source_pod=src(PAUSED_PERSISTENT)), Action.DELETE_SOURCE_POD,
                 id="succeeded-source-paused-persistent-removed"),
    pytest.param(obs(phase=P.FAILED, vm=VM_BACK, target_pod=tgt(PAUSED_PERSISTENT),
                     status_reason="MigrationFailed"), Action.REMOVE_FINALIZER,
                 id="failed-target-paused-persistent-kept"),
])
def test_cleanup_never_removes_a_launcher_whose_node_runs_the_guest(o: Observed, action: Action) -> None:
    assert decide(o).action == action


def test_cleanup_keeps_a_target_launcher_that_cannot_say_where_the_guest_is() -> None:
    d = decide(obs(phase=P.FAILED, vm=VM_BACK, source_pod=src(UNREACHABLE), target_pod=tgt(UNREACHABLE),
                   status_reason="GuestLocationUnknown"))
    assert d.action != Action.DELETE_TARGET_POD


@pytest.mark.parametrize(("reason", "action"), [
    pytest.param("GuestLost", Action.RECORD_VM_LOST, id="lost"),
    pytest.param("GuestOnBothNodes", Action.RECORD_VM_LOST, id="both"),
    pytest.param("GuestLocationUnknown", Action.RECORD_VM_LOST, id="unknown"),
    pytest.param("MigrationFailed", Action.RECORD_VM_ON_SOURCE, id="on-source"),
    pytest.param("AgentFailed", Action.RECORD_VM_ON_SOURCE, id="agent-failed-on-source"),
])
def test_a_failed_migration_records_the_vm_lost_only_for_a_guest_not_on_its_source(reason: str,
                                                                                  action: Action) -> None:
    assert decide(obs(phase=P.FAILED, vm=VM_OURS, status_reason=reason)).action == action


def test_cleanup_removes_the_abort_pod_before_releasing() -> None:
    abort = PodView(name="virt-abort-m-ddddd", node="node0", phase="Succeeded", exit_code=0)
    assert decide(obs(phase=P.FAILED, vm=VM_BACK, abort_pod=abort)).action == Action.DELETE_ABORT_POD
    going = PodView(name="virt-abort-m-ddddd", node="node0", phase="Succeeded", exit_code=0, deleting=True)
    assert decide(obs(phase=P.FAILED, vm=VM_BACK, abort_pod=going)).action == Action.NOTHING
    assert decide(obs(phase=P.FAILED, vm=VM_BACK)).action == Action.REMOVE_FINALIZER


def test_a_finished_migration_never_removes_the_pod_the_vm_runs_in_now() -> None:
    """m1 moved the VM node1 -> node0, then m2 moved it back to node1: m1's leftover cleanup must not take
    the VM's new pod on node1 for its old source pod."""
    now_on_node1 = VMState(running=True, node="node1", launcher_pod="virt-launcher-testvm-new",
                           migration_uid="m2", migration_completed=True)
    d = decide(obs(phase=P.SUCCEEDED, vm=now_on_node1,
                   source_pod=PodView(name="virt-launcher-testvm-new", node="node1", phase="Running")))
    assert d.action == Action.REMOVE_FINALIZER
    released = decide(obs(phase=P.SUCCEEDED, has_finalizer=False, vm=now_on_node1, source_pod=SRC))
    assert released.action == Action.NOTHING


def test_a_new_migration_waits_while_the_previous_one_cleans_up() -> None:
    d = decide(obs(phase=None, finishing="m1"))
    assert d.action == Action.NOTHING and "'m1'" in d.reason and d.requeue_after


def test_busy_failure_never_touches_the_other_migrations_vm() -> None:
    other = VMState(running=True, node="node0", migration_uid="someone-else")
    d = decide(obs(phase=P.FAILED, vm=other))
    assert d.action == Action.REMOVE_FINALIZER


def test_a_losing_side_still_shown_running_is_looked_at_again_before_it_is_kept() -> None:
    """Its launcher may have died a moment ago, its pod not yet marked so: once it is, it goes."""
    o = obs(phase=P.SUCCEEDED, vm=VM_RECORDED, source_pod=SRC, phase_age_s=1.0)
    d = decide(o, T)
    assert d.action == Action.NOTHING and d.requeue_after
    dead = src(RUNS, phase="Failed", exit_code=137)
    assert decide(obs(phase=P.SUCCEEDED, vm=VM_RECORDED, source_pod=dead, phase_age_s=2.0), T).action == \
        Action.DELETE_SOURCE_POD


def test_a_competitor_seen_right_after_the_create_is_confirmed_before_vmbusy() -> None:
    """Back-to-back Migrations of one VM: a cache a moment behind may still show the first one running."""
    early = decide(obs(competitor="hop1", age_s=0.5), T)
    assert early.action == Action.NOTHING and early.requeue_after == pytest.approx(1.5)
    d = decide(obs(competitor="hop1", age_s=2.0), T)
    assert (d.action, d.reason) == (Action.FAIL, "VMBusy")
