"""Status builders: phases with timestamps, conditions, agent results, VM status."""

from __future__ import annotations

import datetime as dt

from virtmigrate.api.constants import MigrationPhase as P
from virtmigrate.controller.migration import status as st
from virtmigrate.controller.migration.status import (
    agent_result,
    phase_entered,
    status_patch,
    vm_migrating,
    vm_on_source,
    vm_on_target,
    with_condition,
    with_phase,
)

T0 = dt.datetime(2026, 1, 1, 0, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=2.5)


def test_with_phase_appends_timestamp_and_keeps_input() -> None:
    old = {"phase": "Pending",
           "phaseTransitionTimestamps": [{"phase": "Pending", "time": "2026-01-01T00:00:00.000000Z"}]}
    new = with_phase(old, P.SCHEDULING, T1, sourceNode="node0", targetPod="t")
    assert new == {"phase": "Scheduling", "sourceNode": "node0", "targetPod": "t", "phaseTransitionTimestamps": [
        {"phase": "Pending", "time": "2026-01-01T00:00:00.000000Z"},
        {"phase": "Scheduling", "time": "2026-01-01T00:00:02.500000Z"}]}
    assert old["phase"] == "Pending" and len(old["phaseTransitionTimestamps"]) == 1
    assert phase_entered(new, "Scheduling") == T1


def test_same_phase_adds_no_timestamp_and_none_removes_field() -> None:
    old = {"phase": "Running", "phaseTransitionTimestamps": [{"phase": "Running", "time": "x"}], "reason": "r"}
    new = with_phase(old, P.RUNNING, T1, reason=None)
    assert new == {"phase": "Running", "phaseTransitionTimestamps": [{"phase": "Running", "time": "x"}]}


def test_leaving_pending_resolves_capacity_condition() -> None:
    conds = with_condition([], "WaitingForCapacity", "True", "WaitingForCapacity", "5 running", T0)
    new = with_phase({"phase": "Pending", "conditions": conds}, P.SCHEDULING, T1)
    assert new["conditions"] == [{"type": "WaitingForCapacity", "status": "False", "reason": "Admitted",
                                  "message": "capacity was available",
                                  "lastTransitionTime": "2026-01-01T00:00:02.500000Z"}]


def test_condition_transition_time_moves_only_on_status_change() -> None:
    a = with_condition([], "Unschedulable", "True", "Unschedulable", "0/3", T0)
    b = with_condition(a, "Unschedulable", "True", "Unschedulable", "0/2", T1)
    assert b[0]["lastTransitionTime"] == "2026-01-01T00:00:00.000000Z" and b[0]["message"] == "0/2"


def test_status_patch_is_minimal() -> None:
    assert status_patch({"phase": "A", "x": 1, "gone": 2}, {"phase": "B", "x": 1}) == {"phase": "B", "gone": None}


def test_agent_result_from_termination_message() -> None:
    msg = ('{"outcome": "succeeded", "durationSeconds": 0.9, "downtimeMs": 31, "dataTotal": 268435456, '
           '"dataProcessed": 270000000, "iterations": 3, "mode": "pre-copy", '
           '"actions": ["raised max downtime to 100 ms: step 2"]}')
    assert agent_result(0, msg) == {"exitCode": 0, "outcome": "succeeded", "durationSeconds": 0.9, "downtimeMs": 31,
                                    "dataTotal": 268435456, "dataProcessed": 270000000, "iterations": 3,
                                    "mode": "pre-copy", "actions": ["raised max downtime to 100 ms: step 2"],
                                    "message": ""}


def test_agent_result_for_a_crash_keeps_its_last_words() -> None:
    assert agent_result(137, "Traceback: boom\n") == {"exitCode": 137, "outcome": "AgentFailed",
                                                      "message": "Traceback: boom"}


def test_vm_status_through_a_migration() -> None:
    running = {"phase": "Running", "node": "node0", "launcherPod": "src"}
    m = vm_migrating(running, migration_name="m", migration_uid="u", source_node="node0", target_pod="tgt", now=T0)
    assert m["phase"] == "Migrating" and m["migrationState"]["completed"] is False
    ok = vm_on_target(m, target_node="node1", target_pod="tgt", mode="pre-copy", now=T1)
    assert (ok["phase"], ok["node"], ok["launcherPod"]) == ("Running", "node1", "tgt")
    assert ok["migrationState"] == {"migrationName": "m", "migrationUID": "u", "sourceNode": "node0",
                                    "targetNode": "node1", "targetPod": "tgt",
                                    "startTimestamp": "2026-01-01T00:00:00.000000Z",
                                    "endTimestamp": "2026-01-01T00:00:02.500000Z", "completed": True,
                                    "result": "Succeeded", "mode": "pre-copy"}
    back = vm_on_source(m, reason="Cancelled", now=T1)
    assert (back["phase"], back["node"], back["launcherPod"]) == ("Running", "node0", "src")
    assert back["migrationState"]["result"] == "Cancelled"
    assert running == {"phase": "Running", "node": "node0", "launcherPod": "src"}


def test_completed_progress_is_100_percent_with_the_results_figures() -> None:
    running = {"percent": 37, "percentText": "37%", "dataRemaining": 80, "transferRate": 5, "mode": "pre-copy"}
    out = st.completed_progress(running, {"dataTotal": 128, "dataProcessed": 130, "mode": "post-copy"})
    assert out == {"percent": 100, "percentText": "100%", "dataRemaining": 0, "transferRate": 5,
                   "dataTotal": 128, "dataProcessed": 130, "mode": "post-copy"}
    assert running["percent"] == 37  # input untouched
    assert st.completed_progress(None, None)["percentText"] == "100%"


def test_the_agent_and_the_controller_share_one_result_contract() -> None:
    """What the agent writes is exactly what the controller reads back into status.result."""
    from virtmigrate.agent.jobstats import Mode
    from virtmigrate.agent.result import Result, termination_message
    from virtmigrate.api.exitcodes import ExitCode

    written = termination_message(Result(ExitCode.ABORTED_NO_PROGRESS, "no progress for 150 s", duration_s=151.2,
                                         data_total=64 << 20, data_processed=900 << 20, iterations=40,
                                         mode=Mode.PRE_COPY, actions=("raised max downtime to 100 ms",)))
    assert agent_result(22, written) == {
        "exitCode": 22, "outcome": "aborted_no_progress", "durationSeconds": 151.2, "dataTotal": 64 << 20,
        "dataProcessed": 900 << 20, "iterations": 40, "mode": "pre-copy",
        "actions": ["raised max downtime to 100 ms"], "message": "no progress for 150 s"}


def test_status_builders_never_change_the_cached_status_they_start_from() -> None:
    """They share what they keep with their input (a read-only cached object) and replace what they change."""
    conds = with_condition([], "WaitingForCapacity", "True", "WaitingForCapacity", "5 running", T0)
    old = {"phase": "Pending", "conditions": conds, "phaseTransitionTimestamps": [{"phase": "Pending", "time": "x"}]}
    snapshot = repr(old)
    with_phase(old, P.SCHEDULING, T1, sourceNode="node0")
    assert repr(old) == snapshot
    vm = vm_migrating({"phase": "Running", "node": "node0", "launcherPod": "src"}, migration_name="m",
                      migration_uid="u", source_node="node0", target_pod="tgt", now=T0)
    snapshot = repr(vm)
    vm_on_target(vm, target_node="node1", target_pod="tgt", mode="pre-copy", now=T1)
    vm_on_source(vm, reason="Cancelled", now=T1)
    st.vm_lost(vm, reason="GuestLost", message="gone", now=T1)
    assert repr(vm) == snapshot
