"""The Migration phase machine, decision by decision, with literals."""

from __future__ import annotations

import pytest

from virtmigrate.api.constants import MigrationPhase as P
from virtmigrate.controller.migration.decide import (
    Action,
    Observed,
    Timeouts,
    VMState,
    decide,
)
from virtmigrate.controller.podstate import PodView

UID = "mig-uid"
VM_RUNNING = VMState(running=True, node="node0", launcher_pod="virt-launcher-testvm-aaaaa")
VM_OURS = VMState(running=True, node="node0", launcher_pod="virt-launcher-testvm-aaaaa", migration_uid=UID)
SRC = PodView(name="virt-launcher-testvm-aaaaa", node="node0", phase="Running", ready=True)
TGT_PENDING = PodView(name="virt-launcher-testvm-bbbbb")
TGT_BOUND = PodView(name="virt-launcher-testvm-bbbbb", node="node1", phase="Running")
TGT_READY = PodView(name="virt-launcher-testvm-bbbbb", node="node1", phase="Running", ready=True)
AGENT_RUN = PodView(name="virt-migration-m-ccccc", node="node0", phase="Running")
SUCCESS_MSG = '{"outcome": "SUCCEEDED", "duration_s": 1.5, "downtime_ms": 12, "mode": "pre-copy"}'


def obs(**kw: object) -> Observed:
    base: dict[str, object] = {"uid": UID, "vm_name": "testvm", "phase": None, "has_finalizer": True,
                               "vm": VM_RUNNING}
    base.update(kw)
    return Observed(**base)  # type: ignore[arg-type]


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
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND), Action.NOTHING, {}, id="wait-ready"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_READY), Action.SET_PHASE,
                 {"phase": P.TARGET_READY}, id="ready"),
    pytest.param(obs(phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_READY), Action.CREATE_AGENT_POD, {},
                 id="create-agent"),
    pytest.param(obs(phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_READY, agent_pod=AGENT_RUN),
                 Action.SET_PHASE, {"phase": P.RUNNING}, id="agent-running"),
    pytest.param(obs(phase=P.RUNNING, vm=VM_OURS, target_pod=TGT_READY, agent_pod=AGENT_RUN),
                 Action.NOTHING, {}, id="migrating"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=None), Action.FAIL,
                 {"reason": "TargetPodFailed"}, id="target-vanished"),
    pytest.param(obs(phase=P.SCHEDULED, vm=VM_OURS,
                     target_pod=PodView(name="t", node="node1", phase="Failed", exit_code=3)),
                 Action.FAIL, {"reason": "TargetPodFailed"}, id="target-failed"),
    pytest.param(obs(phase=P.SCHEDULING, vm=None), Action.FAIL, {"reason": "VMDeleted"}, id="vm-deleted"),
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


def test_pending_target_times_out_after_other_timeout() -> None:
    o = obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND, phase_age_s=899)
    assert decide(o, Timeouts(pending_s=900)).action == Action.NOTHING
    o2 = obs(phase=P.SCHEDULED, vm=VM_OURS, target_pod=TGT_BOUND, phase_age_s=900)
    assert decide(o2, Timeouts(pending_s=900)).reason == "TargetNotReady"


@pytest.mark.parametrize(("code", "message", "action", "reason"), [
    pytest.param(0, SUCCESS_MSG, Action.SUCCEED, "Migrated", id="0-succeeded"),
    pytest.param(2, "", Action.FAIL, "InvalidAgentArguments", id="2-invalid-args"),
    pytest.param(11, '{"outcome": "DESTINATION_UNREACHABLE", "message": "cannot connect"}', Action.FAIL,
                 "DestinationUnreachable", id="11-destination"),
    pytest.param(12, "", Action.FAIL, "DomainNotFound", id="12-domain"),
    pytest.param(20, "", Action.FAIL, "MigrationFailed", id="20-libvirt"),
    pytest.param(21, "", Action.FAIL, "CompletionTimeout", id="21-timeout"),
    pytest.param(22, "", Action.FAIL, "NoProgress", id="22-no-progress"),
    pytest.param(23, "", Action.FAIL, "Cancelled", id="23-cancelled"),
    pytest.param(24, "", Action.FAIL, "VerificationFailed", id="24-verification"),
    pytest.param(137, "Killed", Action.FAIL, "AgentFailed", id="137-killed"),
])
def test_agent_exit_code_to_phase(code: int, message: str, action: Action, reason: str) -> None:
    agent = PodView(name="a", node="node0", phase="Succeeded" if code == 0 else "Failed", exit_code=code,
                    termination_message=message)
    d = decide(obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_READY, agent_pod=agent))
    assert (d.action, d.reason) == (action, reason)
    assert d.result is not None and d.result["exitCode"] == code


def test_success_result_carries_agent_figures() -> None:
    agent = PodView(name="a", node="node0", phase="Succeeded", exit_code=0, termination_message=SUCCESS_MSG)
    d = decide(obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=agent))
    assert d.result == {"exitCode": 0, "outcome": "SUCCEEDED", "durationSeconds": 1.5, "downtimeMs": 12,
                        "mode": "pre-copy", "message": ""}


def test_agent_gone_without_outcome_uses_launcher_evidence() -> None:
    moved = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=PodView(name="s", node="node0", phase="Succeeded",
                                                                exit_code=0), target_pod=TGT_READY)
    assert decide(moved).action == Action.SUCCEED
    stayed = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_READY)
    assert (decide(stayed).action, decide(stayed).reason) == (Action.FAIL, "AgentPodGone")
    remembered = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, agent_exit=(0, SUCCESS_MSG))
    assert decide(remembered).action == Action.SUCCEED


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
    pytest.param(obs(deleting=True, phase=P.TARGET_READY, vm=VM_OURS, target_pod=TGT_READY), Action.FAIL,
                 "Cancelled", id="target-ready"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, target_pod=TGT_READY, agent_pod=AGENT_RUN),
                 Action.DELETE_AGENT_POD, "stopping the agent to cancel", id="running-stop-agent"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, target_pod=TGT_READY,
                     agent_pod=PodView(name="a", phase="Running", deleting=True)),
                 Action.NOTHING, "waiting for the agent to abort", id="running-agent-stopping"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, target_pod=TGT_READY,
                     agent_pod=PodView(name="a", phase="Failed", deleting=True, exit_code=23)),
                 Action.FAIL, "Cancelled", id="running-agent-cancelled"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, target_pod=TGT_READY,
                     agent_pod=PodView(name="a", phase="Succeeded", deleting=True, exit_code=0)),
                 Action.SUCCEED, "Migrated", id="running-completed-before-cancel"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_READY,
                     agent_exit=(23, "")), Action.FAIL, "Cancelled", id="running-agent-gone-exit-known"),
    pytest.param(obs(deleting=True, phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_READY),
                 Action.FAIL, "Cancelled", id="running-agent-gone-guest-on-source"),
    pytest.param(obs(deleting=True, has_finalizer=False, phase=P.RUNNING), Action.NOTHING,
                 "finalizer already released", id="released"),
])
def test_cancel(o: Observed, action: Action, reason: str) -> None:
    d = decide(o)
    assert (d.action, d.reason) == (action, reason)


# --- cleanup -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("o", "action"), [
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_OURS, agent_pod=PodView(name="a", phase="Succeeded", exit_code=0)),
                 Action.DELETE_AGENT_POD, id="ok-delete-agent"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VM_OURS, source_pod=SRC), Action.RECORD_VM_ON_TARGET, id="ok-vm"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True),
                     source_pod=SRC), Action.DELETE_SOURCE_POD, id="ok-delete-source"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True),
                     source_pod=PodView(name="s", deleting=True)), Action.NOTHING, id="ok-wait-source"),
    pytest.param(obs(phase=P.SUCCEEDED, vm=VMState(running=True, migration_uid=UID, migration_completed=True)),
                 Action.REMOVE_FINALIZER, id="ok-release"),
    pytest.param(obs(phase=P.FAILED, vm=VM_OURS, target_pod=TGT_READY), Action.RECORD_VM_ON_SOURCE,
                 id="failed-vm"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING, target_pod=TGT_READY), Action.DELETE_TARGET_POD,
                 id="failed-delete-target"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING), Action.REMOVE_FINALIZER, id="failed-release"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING, deleting=True), Action.REMOVE_FINALIZER,
                 id="failed-deleted-release"),
    pytest.param(obs(phase=P.FAILED, vm=VM_RUNNING, has_finalizer=False, target_pod=TGT_READY), Action.NOTHING,
                 id="done-means-done"),
])
def test_cleanup(o: Observed, action: Action) -> None:
    assert decide(o).action == action


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
