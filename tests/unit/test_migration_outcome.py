"""The end of an agent: its exit code is a claim, the launchers' reports decide (decide.resolve_outcome),
and an agent that does not end is stopped, then force-deleted. Literals only; the clock is the ages in
`Observed` (agent_end_age_s, agent_stop_age_s, phase_age_s)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.migration_literals import (
    AGENT_RUN,
    JOB_IN,
    JOB_OUT,
    NONE_HERE,
    PAUSED_COPY,
    PAUSED_PERSISTENT,
    RUNS,
    SRC,
    SRC_LEFT,
    TGT_RUNS,
    TGT_WAITING,
    UNREACHABLE,
    VM_OURS,
    agent_exited,
    exited,
    obs,
    src,
    tgt,
)
from virtmigrate.api.constants import FINALIZER_AGENT
from virtmigrate.api.constants import MigrationPhase as P
from virtmigrate.controller.migration.decide import Action, Decision, Observed, Timeouts, VMState, decide
from virtmigrate.controller.podstate import PodView, node_lost

T = Timeouts(settle_s=3.0, orphan_job_s=30.0, resolve_s=300.0, running_s=3600.0, agent_grace_s=45.0)
KILLED = agent_exited(137, "Killed")
ABORT_POD = PodView(name="virt-abort-m-ddddd", node="node0", phase="Running")

SIDES = {  # where the launchers say the guest is
    "target": {"source_pod": SRC_LEFT, "target_pod": TGT_RUNS},
    "source": {"source_pod": SRC, "target_pod": TGT_WAITING},
    "neither": {"source_pod": src(NONE_HERE, **exited("GuestCrashed", 11)), "target_pod": TGT_WAITING},
    "both": {"source_pod": SRC, "target_pod": TGT_RUNS},
    "moving": {"source_pod": src(JOB_OUT), "target_pod": tgt(JOB_IN)},
    "unknown": {"source_pod": src(UNREACHABLE), "target_pod": TGT_WAITING},
    "source-target-stuck": {"source_pod": SRC, "target_pod": tgt(JOB_IN)},
    "target-source-unknown": {"source_pod": src(UNREACHABLE), "target_pod": TGT_RUNS},
}


def ended(guest: str, *, agent: PodView = KILLED, age: float, **kw: object) -> Observed:
    """Running, the agent ended `age` seconds ago, the guest where `guest` says."""
    return obs(**{"phase": P.RUNNING, "vm": VM_OURS, "agent_pod": agent, "agent_end_age_s": age, **SIDES[guest], **kw})


# --- an agent killed by SIGKILL (137): no claim, the facts decide after the settle wait -------------------

def test_killed_agent_with_the_guest_on_the_target_succeeds_after_the_reports_settle() -> None:
    early = decide(ended("target", age=1.0), T)
    assert early.action == Action.NOTHING and early.requeue_after == pytest.approx(2.0)
    d = decide(ended("target", age=T.settle_s), T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")
    assert "target node's launcher reports the guest running" in d.message
    assert d.result is not None and d.result["exitCode"] == 137


def test_killed_agent_with_the_guest_on_the_source_fails_as_agent_failed() -> None:
    assert decide(ended("source", age=0.0), T).action == Action.NOTHING
    d = decide(ended("source", age=T.settle_s), T)
    assert (d.action, d.reason) == (Action.FAIL, "AgentFailed")
    assert "source node's launcher reports the guest running there" in d.message


def test_killed_agent_with_the_guest_on_neither_node_is_a_lost_guest() -> None:
    d = decide(ended("neither", age=T.settle_s), T)
    assert (d.action, d.reason) == (Action.FAIL, "GuestLost")
    assert "node0" in d.message and "node1" in d.message and "'testvm'" in d.message


def test_a_guest_on_both_nodes_is_never_resolved_automatically() -> None:
    d = decide(ended("both", age=T.settle_s), T)
    assert (d.action, d.reason) == (Action.FAIL, "GuestOnBothNodes")
    assert "admin" in d.message


def test_an_agent_pod_that_vanished_without_a_word_fails_as_agent_pod_gone() -> None:
    o = obs(phase=P.RUNNING, vm=VM_OURS, agent_end_age_s=T.settle_s, **SIDES["source"])  # type: ignore[arg-type]
    assert (decide(o, T).action, decide(o, T).reason) == (Action.FAIL, "AgentPodGone")


# --- a job that outlives its agent -----------------------------------------------------------------------

def test_a_job_still_running_waits_then_is_aborted_then_fails_as_location_unknown() -> None:
    waiting = decide(ended("moving", age=T.settle_s), T)
    assert waiting.action == Action.NOTHING and waiting.requeue_after  # looks again, bounded
    abort = decide(ended("moving", age=T.orphan_job_s), T)
    assert (abort.action, abort.reason) == (Action.CREATE_ABORT_POD, "OrphanedJob")
    assert "node0" in abort.message and "'testvm'" in abort.message
    aborting = decide(ended("moving", age=T.orphan_job_s + 10, abort_pod=ABORT_POD), T)
    assert aborting.action == Action.NOTHING  # one abort pod, not one per look
    d = decide(ended("moving", age=T.resolve_s, abort_pod=ABORT_POD), T)
    assert (d.action, d.reason) == (Action.FAIL, "GuestLocationUnknown")
    assert "check the nodes' libvirt" in d.message


def test_an_aborted_job_then_resolves_from_the_facts() -> None:
    d = decide(ended("source", age=T.orphan_job_s + 5, abort_pod=ABORT_POD), T)
    assert (d.action, d.reason) == (Action.FAIL, "AgentFailed")


def test_an_unreachable_source_is_waited_for_then_fails_as_location_unknown() -> None:
    assert decide(ended("unknown", age=T.resolve_s - 1), T).action == Action.NOTHING  # no abort: no job seen
    d = decide(ended("unknown", age=T.resolve_s), T)
    assert (d.action, d.reason) == (Action.FAIL, "GuestLocationUnknown")


@pytest.mark.parametrize(("guest", "decision"), [
    pytest.param("source-target-stuck", (Action.FAIL, "AgentFailed"), id="source-runs-target-still-shows-a-job"),
    pytest.param("target-source-unknown", (Action.SUCCEED, "Migrated"), id="target-runs-source-cannot-say"),
])
def test_long_after_the_agent_the_side_that_runs_the_guest_without_a_job_has_it(
        guest: str, decision: tuple[Action, str]) -> None:
    """A stale or stuck report on the other side (a leftover incoming job, a libvirt that does not answer)
    waits the orphan-job bound, not the whole resolve bound: libvirt runs a guest without a job on one side
    only."""
    assert decide(ended(guest, age=T.orphan_job_s - 1), T).action == Action.NOTHING
    d = decide(ended(guest, age=T.orphan_job_s), T)
    assert (d.action, d.reason) == decision


# --- claims the facts confirm decide at once; the others are checked -------------------------------------

@pytest.mark.parametrize(("code", "guest", "decision"), [
    pytest.param(0, "target", (Action.SUCCEED, "Migrated"), id="success-confirmed"),
    pytest.param(20, "source", (Action.FAIL, "MigrationFailed"), id="failure-confirmed"),
    pytest.param(23, "source", (Action.FAIL, "Cancelled"), id="cancel-confirmed"),
])
def test_a_confirmed_claim_decides_without_waiting(code: int, guest: str, decision: tuple[Action, str]) -> None:
    d = decide(ended(guest, agent=agent_exited(code), age=0.0), T)
    assert (d.action, d.reason) == decision


@pytest.mark.parametrize(("code", "guest"), [
    pytest.param(0, "source", id="success-claimed-guest-on-source"),
    pytest.param(0, "moving", id="success-claimed-job-still-running"),
    pytest.param(20, "target", id="failure-claimed-guest-on-target"),
])
def test_a_claim_the_facts_do_not_confirm_waits_for_them(code: int, guest: str) -> None:
    d = decide(ended(guest, agent=agent_exited(code), age=0.0), T)
    assert d.action == Action.NOTHING and d.requeue_after == T.settle_s


def test_a_failure_claim_with_the_guest_on_the_target_is_a_success() -> None:
    """The job failed late (e.g. the agent's connection broke at switch-over) yet the guest runs on the
    target and not on the source: the facts win."""
    d = decide(ended("target", agent=agent_exited(20), age=T.settle_s), T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")
    assert "the migration completed" in d.message


def test_a_success_claim_the_facts_contradict_fails_with_a_failure_reason() -> None:
    d = decide(ended("source", agent=agent_exited(0), age=T.settle_s), T)
    assert d.action == Action.FAIL
    assert d.reason != "Migrated"


def test_a_paused_copy_left_behind_is_a_success_with_a_warning() -> None:
    d = decide(ended("target", agent=agent_exited(0), age=0.0, source_pod=src(PAUSED_COPY)), T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")
    assert "paused copy" in d.warning and "source node" in d.warning


def test_a_paused_persistent_copy_left_behind_is_kept_with_a_warning() -> None:
    d = decide(ended("target", agent=agent_exited(0), age=0.0, source_pod=src(PAUSED_PERSISTENT)), T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")
    assert "paused, persistent copy" in d.warning and "source node" in d.warning and "kept" in d.warning


def test_a_cancel_that_came_too_late_is_a_success() -> None:
    o = ended("target", agent=agent_exited(23, deleting=True), age=T.settle_s, deleting=True)
    d = decide(o, T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")
    assert "before the cancel took effect" in d.message


# --- an agent that does not end -----------------------------------------------------------------------------

def _running(*, age: float, agent: PodView = AGENT_RUN, stop_age: float = 0.0, deleting: bool = False,
             forced: bool = False) -> Observed:
    return obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=agent, phase_age_s=age, agent_stop_age_s=stop_age,
               agent_forced=forced, deleting=deleting, **SIDES["moving"])  # type: ignore[arg-type]


STOPPING = PodView(name=AGENT_RUN.name, node="node0", phase="Running", deleting=True, finalizers=(FINALIZER_AGENT,))


def test_running_is_bounded_then_the_agent_is_stopped_then_force_deleted() -> None:
    d = decide(_running(age=600.0), T)
    assert d.action == Action.NOTHING and d.requeue_after == T.running_s - 600.0
    stop = decide(_running(age=T.running_s), T)
    assert (stop.action, stop.reason) == (Action.DELETE_AGENT_POD, "AgentStuck")
    assert "3600s" in stop.message
    waiting = decide(_running(age=T.running_s + 10, agent=STOPPING, stop_age=10.0), T)
    assert waiting.action == Action.NOTHING and waiting.requeue_after == T.agent_grace_s - 10.0
    force = decide(_running(age=T.running_s + 45, agent=STOPPING, stop_age=T.agent_grace_s), T)
    assert force.action == Action.FORCE_DELETE_AGENT_POD
    assert AGENT_RUN.name in force.message


def test_cancel_with_a_stuck_agent_stops_it_then_force_deletes_it() -> None:
    d = decide(_running(age=5.0, deleting=True), T)
    assert (d.action, d.reason) == (Action.DELETE_AGENT_POD, "stopping the agent to cancel")
    waiting = decide(_running(age=15.0, agent=STOPPING, stop_age=10.0, deleting=True), T)
    assert waiting.action == Action.NOTHING and waiting.requeue_after == pytest.approx(35.0)
    force = decide(_running(age=50.0, agent=STOPPING, stop_age=T.agent_grace_s, deleting=True), T)
    assert force.action == Action.FORCE_DELETE_AGENT_POD


def test_an_agent_deleted_by_someone_else_is_waited_for_not_deleted_again() -> None:
    d = decide(_running(age=5.0, agent=STOPPING, stop_age=1.0), T)
    assert d.action == Action.NOTHING


def test_a_force_deleted_agent_that_never_goes_still_resolves() -> None:
    stop_age = T.agent_grace_s + T.resolve_s + 60  # force-deleted long ago; the node never answered
    o = obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=STOPPING, phase_age_s=T.running_s + stop_age,
            agent_stop_age_s=stop_age, agent_forced=True, **SIDES["unknown"])  # type: ignore[arg-type]
    d: Decision = decide(o, T)
    assert d.action in (Action.FAIL, Action.SUCCEED)


def test_a_force_delete_is_followed_by_one_grace_period_not_two() -> None:
    """A force-delete moves the pod's deletionTimestamp to its own moment, so the stop age starts again from the
    force: one more grace period after it, the outcome is read from the nodes (stop -> force -> resolve is 2x
    the grace, not 3x), and a forced agent is never force-deleted again."""
    waiting = decide(_running(age=T.running_s + 50, agent=STOPPING, stop_age=5.0, forced=True), T)
    assert waiting.action == Action.NOTHING and waiting.requeue_after == T.agent_grace_s - 5.0
    landed = obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=STOPPING, phase_age_s=T.running_s + 100,
                 agent_stop_age_s=T.agent_grace_s + T.settle_s, agent_forced=True, **SIDES["target"])  # type: ignore[arg-type]
    assert (decide(landed, T).action, decide(landed, T).reason) == (Action.SUCCEED, "Migrated")


def test_the_running_and_agent_timeouts_have_safe_defaults() -> None:
    t = Timeouts()
    assert t.settle_s < t.orphan_job_s < t.resolve_s  # settle, then abort, then give up
    assert t.agent_grace_s < t.running_s


def test_reports_alone_never_end_a_running_agent() -> None:
    """The target reports the guest running while the agent still runs (switch-over): nothing is decided
    until the agent ends — its job may still be finishing on the source."""
    o = obs(phase=P.RUNNING, vm=VM_OURS, agent_pod=AGENT_RUN, source_pod=src(RUNS), target_pod=TGT_RUNS)
    assert decide(o, T).action == Action.NOTHING


# --- a launcher killed mid-migration: a witness on its node speaks for it ---------------------------------

KILLED_LAUNCHER = {"phase": "Failed", "exit_code": 137, "termination_message": ""}
TGT_KILLED = tgt(JOB_IN, **KILLED_LAUNCHER)            # the target's launcher died during the copy
SRC_KILLED = src(JOB_OUT, **KILLED_LAUNCHER)           # the source's launcher died during the copy
TGT_WITNESS = PodView(name="virt-launcher-testvm-wtgt1", node="node1", phase="Running")
SRC_WITNESS = PodView(name="virt-launcher-testvm-wsrc1", node="node0", phase="Running")


def cleanup(o: Observed) -> list[str]:
    """The pods a finished Migration's cleanup removes, in order, each gone before the next look; then it must
    release its finalizer."""
    removed: list[str] = []
    for _ in range(5):
        d = decide(o, T)
        if d.action not in (Action.DELETE_SOURCE_POD, Action.DELETE_TARGET_POD):
            assert d.action == Action.REMOVE_FINALIZER, d
            return removed
        removed.append(d.pod)
        side = "source_pod" if o.source_pod is not None and d.pod == o.source_pod.name else "target_pod"
        o = dataclasses.replace(o, **{side: None})
    raise AssertionError(f"cleanup never ends: {removed}")


def test_a_killed_target_launcher_gets_a_witness_whose_report_confirms_the_success() -> None:
    silent = ended("target", agent=agent_exited(0, ""), age=0.0, target_pod=TGT_KILLED)
    d = decide(silent, T)
    assert (d.action, d.side, d.reason) == (Action.CREATE_WITNESS, "target", "LauncherWitness")
    assert "node1" in d.message and "'testvm'" in d.message
    waiting = decide(ended("target", agent=agent_exited(0, ""), age=1.0, target_pod=TGT_KILLED,
                           target_witness=TGT_WITNESS), T)
    assert waiting.action == Action.NOTHING  # the witness has not reported yet
    d = decide(ended("target", agent=agent_exited(0, ""), age=1.0, target_pod=TGT_KILLED,
                     target_witness=tgt(RUNS, name=TGT_WITNESS.name)), T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")


def test_a_killed_source_launcher_on_cancel_is_resolved_by_its_witness() -> None:
    cancel = {"deleting": True, "agent_pod": agent_exited(23, ""), "agent_end_age_s": 0.0}
    o = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_KILLED, target_pod=TGT_WAITING, **cancel)  # type: ignore[arg-type]
    assert (decide(o, T).action, decide(o, T).side) == (Action.CREATE_WITNESS, "source")
    o = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_KILLED, target_pod=TGT_WAITING,  # type: ignore[arg-type]
            source_witness=src(RUNS, name=SRC_WITNESS.name), **cancel)
    d = decide(o, T)
    assert (d.action, d.reason) == (Action.FAIL, "Cancelled")


def test_a_vanished_target_pod_proves_nothing_once_it_was_created() -> None:
    d = decide(ended("target", age=T.settle_s, target_pod=None, source_pod=SRC_LEFT), T)
    assert (d.action, d.side) == (Action.CREATE_WITNESS, "target")  # not GuestLost


def test_a_witness_that_died_without_a_word_is_replaced() -> None:
    dead = PodView(name=TGT_WITNESS.name, node="node1", **KILLED_LAUNCHER)  # type: ignore[arg-type]
    d = decide(ended("target", age=1.0, target_pod=TGT_KILLED, target_witness=dead), T)
    assert (d.action, d.pod) == (Action.DELETE_WITNESS, TGT_WITNESS.name)


def test_the_witness_holding_the_guest_becomes_the_vms_launcher_and_the_dead_pods_go() -> None:
    holding = tgt(RUNS, name=TGT_WITNESS.name)
    done = {"phase": P.SUCCEEDED, "source_pod": SRC_LEFT, "target_pod": TGT_KILLED, "target_witness": holding,
            "entered": frozenset({"TargetReady", "Running"})}
    d = decide(obs(vm=VM_OURS, **done), T)  # type: ignore[arg-type]
    assert (d.action, d.pod) == (Action.RECORD_VM_ON_TARGET, TGT_WITNESS.name)
    recorded = VMState(running=True, node="node1", launcher_pod=TGT_WITNESS.name, migration_uid="mig-uid",
                       migration_completed=True)
    # never the witness that holds the guest
    assert cleanup(obs(vm=recorded, **done)) == [SRC_LEFT.name, TGT_KILLED.name]  # type: ignore[arg-type]


def test_a_source_witness_holding_the_guest_after_a_failure_becomes_the_vms_launcher() -> None:
    o = obs(phase=P.FAILED, vm=VM_OURS, status_reason="Cancelled", source_pod=SRC_KILLED, target_pod=TGT_WAITING,
            source_witness=src(RUNS, name=SRC_WITNESS.name))  # type: ignore[arg-type]
    d = decide(o, T)
    assert (d.action, d.pod) == (Action.RECORD_VM_ON_SOURCE, SRC_WITNESS.name)
    recorded = VMState(running=True, node="node0", launcher_pod=SRC_WITNESS.name, migration_uid="mig-uid",
                       migration_completed=True)
    # the target, and the dead source launcher (perhaps a former target, which the VM controller leaves alone)
    assert cleanup(dataclasses.replace(o, vm=recorded)) == [TGT_WAITING.name, SRC_KILLED.name]


def test_an_agent_whose_node_stopped_answering_is_stopped_then_resolved_from_the_nodes() -> None:
    """Its pod's status is frozen with its node: waiting for the Running bound (an hour) would leave the
    Migration Running with the guest long since landed. Stop it; force-delete; then the facts decide."""
    running = {"phase": P.RUNNING, "vm": VM_OURS, "agent_node_lost": True, **SIDES["target"]}
    d = decide(obs(agent_pod=AGENT_RUN, **running), T)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (Action.DELETE_AGENT_POD, "AgentNodeLost")
    assert AGENT_RUN.name in d.message and "node0" in d.message
    stopping = dataclasses.replace(AGENT_RUN, deleting=True)
    d = decide(obs(agent_pod=stopping, agent_stop_age_s=T.agent_grace_s, **running), T)  # type: ignore[arg-type]
    assert d.action == Action.FORCE_DELETE_AGENT_POD
    d = decide(obs(agent_pod=stopping, agent_stop_age_s=T.agent_grace_s + T.settle_s, agent_forced=True,
                   **running), T)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")


def test_node_lost_reads_the_unreachable_taint_or_an_unknown_ready_condition() -> None:
    assert node_lost({"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}})
    assert node_lost({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    assert not node_lost({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert not node_lost(None)
