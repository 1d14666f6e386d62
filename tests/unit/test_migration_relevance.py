"""The pod handler's filter (migration/relevance.py): which pod changes may change a Migration's next step.

A skipped change must be one the phase machine cannot act on; every change it can act on must queue the
Migration, or the Migration would stall until some other event.
"""

from __future__ import annotations

import dataclasses

import pytest

from virtmigrate.api.domainfacts import DomainFacts, DomainState, LauncherMode
from virtmigrate.controller.migration.relevance import Glance, pod_update_matters
from virtmigrate.controller.podstate import PodView

WAITS = DomainFacts(reachable=True, mode=LauncherMode.WAITING)
RUNS = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True, mode=LauncherMode.HOLD)
GONE = DomainFacts(reachable=True, mode=LauncherMode.EXITING)

TARGET = PodView(name="virt-launcher-vm-t", uid="t", node="node1", domain=WAITS)
SOURCE = PodView(name="virt-launcher-vm-s", uid="s", node="node0", phase="Running", ready=True, domain=RUNS)
AGENT = PodView(name="vm-agent", uid="a", node="node0", finalizers=("virtmigrate.kubevirt.io/agent-outcome",))
AGENT_RUNNING = dataclasses.replace(AGENT, phase="Running", ready=True, start_time="t1")
AGENT_DONE = dataclasses.replace(AGENT, phase="Succeeded", exit_code=0, termination_message="{}", finished_at="t2")


def change(v: PodView, **fields: object) -> PodView:
    return dataclasses.replace(v, **fields)  # type: ignore[arg-type]


SCHEDULING = Glance(phase="Scheduling")
SCHEDULED = Glance(phase="Scheduled")
READY_AGENT_PENDING = Glance(phase="TargetReady", agent=change(AGENT, node=""))
READY_NO_AGENT = Glance(phase="TargetReady")
RUNNING = Glance(phase="Running", agent=AGENT_RUNNING)
CLEANUP = Glance(phase="Succeeded")
CANCELLING = Glance(phase="TargetReady", deleting=True, agent=AGENT)


@pytest.mark.parametrize(("m", "role", "old", "new", "matters"), [
    # launchers: what the phase machine reads of them
    pytest.param(SCHEDULING, "launcher", change(TARGET, node="", domain=None), change(TARGET, domain=None), True,
                 id="target-bound"),
    pytest.param(SCHEDULING, "launcher", change(TARGET, node=""), change(TARGET, node="", unschedulable="0/3 nodes"),
                 True, id="target-unschedulable"),
    pytest.param(SCHEDULED, "launcher", change(TARGET, domain=None), TARGET, True, id="target-reports-waiting"),
    pytest.param(SCHEDULED, "launcher", TARGET, change(TARGET, deleting=True, deleted_at="t"), True,
                 id="target-deleted-while-scheduled"),
    pytest.param(SCHEDULED, "launcher", TARGET, change(TARGET, phase="Failed", exit_code=1), True,
                 id="target-ended"),
    pytest.param(SCHEDULED, "launcher", change(TARGET, domain=None),
                 change(TARGET, domain=None, phase="Running", ready=True, start_time="t"), False,
                 id="target-running-and-ready-is-not-read"),
    pytest.param(CLEANUP, "launcher", change(SOURCE, deleting=True, deleted_at="t1", deletion_grace_s=30),
                 change(SOURCE, deleting=True, deleted_at="t2", deletion_grace_s=0), False,
                 id="launcher-force-deleted-is-not-read"),
    # TargetReady with an agent that has not started: only its start moves the Migration on
    pytest.param(READY_AGENT_PENDING, "launcher", TARGET, change(TARGET, domain=RUNS), False,
                 id="target-report-before-the-agent-starts"),
    pytest.param(READY_AGENT_PENDING, "launcher", SOURCE, change(SOURCE, domain=GONE), False,
                 id="source-report-before-the-agent-starts"),
    pytest.param(READY_NO_AGENT, "launcher", TARGET, change(TARGET, deleting=True), True,
                 id="target-deleted-before-the-agent-exists"),
    pytest.param(Glance(phase="TargetReady", agent=AGENT_RUNNING), "launcher", SOURCE, change(SOURCE, domain=GONE),
                 True, id="source-report-once-the-agent-started"),
    pytest.param(READY_AGENT_PENDING, "agent", change(AGENT, node=""), AGENT, False, id="agent-bound"),
    pytest.param(READY_AGENT_PENDING, "agent", AGENT, AGENT_RUNNING, True, id="agent-started"),
    pytest.param(READY_AGENT_PENDING, "agent", AGENT, AGENT_DONE, True, id="agent-ended-at-once"),
    pytest.param(CANCELLING, "launcher", TARGET, change(TARGET, domain=RUNS), True, id="cancel-reads-everything"),
    pytest.param(CANCELLING, "agent", AGENT, change(AGENT, deleting=True, deleted_at="t"), True,
                 id="cancel-agent-stopping"),
    # Running and cleanup read the agent's end, its node, its deletion and its finalizer
    pytest.param(RUNNING, "agent", AGENT_RUNNING, change(AGENT_RUNNING, ready=False), False, id="agent-readiness"),
    pytest.param(RUNNING, "agent", AGENT_RUNNING, change(AGENT_RUNNING, deleting=True, deleted_at="t"), True,
                 id="agent-stopping"),
    pytest.param(RUNNING, "agent", AGENT_RUNNING, AGENT_DONE, True, id="agent-ended"),
    pytest.param(RUNNING, "launcher", SOURCE, change(SOURCE, domain=GONE), True, id="reports-while-running"),
    pytest.param(CLEANUP, "agent", change(AGENT_DONE, deleting=True), change(AGENT_DONE, deleting=True, finalizers=()),
                 True, id="agent-finalizer-released"),
    pytest.param(CLEANUP, "launcher", SOURCE, change(SOURCE, deleting=True, deleted_at="t"), False,
                 id="cleanup-launcher-being-deleted-is-waited-for"),
    pytest.param(CLEANUP, "launcher", SOURCE, change(SOURCE, deleting=True, domain=GONE), True,
                 id="cleanup-launcher-being-deleted-and-reporting"),
    pytest.param(Glance(phase="Running", has_finalizer=False), "launcher", SOURCE, change(SOURCE, domain=GONE), True,
                 id="no-finalizer-reads-everything"),
    # other pods, and what the filter does not know
    pytest.param(RUNNING, "abort", AGENT, change(AGENT, ready=True), True, id="abort-pod-every-field"),
    pytest.param(None, "launcher", TARGET, TARGET, True, id="migration-not-cached"),
    pytest.param(SCHEDULED, "launcher", None, TARGET, True, id="no-old-view"),
    # adds: the pod the Migration has just created, as created, leads to no step (the create set the timeout)
    pytest.param(Glance(phase="Scheduling", target_pod=TARGET.name), "launcher", None,
                 change(TARGET, node="", domain=None), False, id="add-own-target-unbound"),
    pytest.param(Glance(phase="Scheduling", target_pod=TARGET.name), "launcher", None, change(TARGET, domain=None),
                 True, id="add-own-target-already-bound"),
    pytest.param(Glance(phase="Scheduling", target_pod=TARGET.name), "launcher", None,
                 change(TARGET, node="", unschedulable="0/3 nodes"), True, id="add-own-target-unschedulable"),
    pytest.param(Glance(phase="Scheduling", target_pod="another"), "launcher", None, change(TARGET, node=""), True,
                 id="add-of-another-launcher"),
    pytest.param(Glance(phase="Scheduling", target_pod=TARGET.name, deleting=True), "launcher", None,
                 change(TARGET, node=""), True, id="add-while-cancelling"),
    pytest.param(Glance(phase="TargetReady", agent_pod=AGENT.name), "agent", None, AGENT, False,
                 id="add-own-agent-not-started"),
    pytest.param(Glance(phase="TargetReady", agent_pod=AGENT.name), "agent", None, AGENT_DONE, True,
                 id="add-own-agent-already-ended"),
    pytest.param(Glance(phase="Scheduled", agent_pod=AGENT.name), "agent", None, AGENT, True,
                 id="add-early-agent"),
])
def test_pod_update_matters(m: Glance | None, role: str, old: PodView | None, new: PodView | None,
                            matters: bool) -> None:
    assert pod_update_matters(m, role, old, new) is matters


# A field added to PodView is read by the phase machine until this filter is told otherwise.
_CHANGED: dict[str, object] = {"name": "other", "uid": "other", "node": "node9", "phase": "Running", "ready": True,
                               "deleting": True, "unschedulable": "0/3 nodes", "exit_code": 3,
                               "termination_message": "m", "start_time": "t9", "finished_at": "t9",
                               "deleted_at": "t9", "deletion_grace_s": 7, "finalizers": ("f",), "domain": GONE}
_NOT_READ = {"agent": {"ready", "start_time"},
             "launcher": {"ready", "start_time", "phase", "finished_at", "deleted_at", "deletion_grace_s"}}


@pytest.mark.parametrize("role", ["agent", "launcher"])
@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(PodView)])
def test_every_other_field_of_a_pod_is_read(role: str, field: str) -> None:
    assert set(_CHANGED) == {f.name for f in dataclasses.fields(PodView)}
    old = change(AGENT, domain=WAITS)
    matters = pod_update_matters(RUNNING, role, old, change(old, **{field: _CHANGED[field]}))
    assert matters is (field not in _NOT_READ[role])
