"""Evacuation of a draining node: the budget that makes `kubectl drain` wait, where each VM can go, the whole
step for one node (pure, with literals), and evacuations first in the capacity queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from virtmigrate.api import VM
from virtmigrate.api.constants import LABEL_EVACUATION, LABEL_VM, NODE_CONDITION_EVACUATION
from virtmigrate.controller.evacuation.decide import (
    MigrationInfo,
    NodeState,
    Settings,
    backoff_s,
    decide_evacuation,
    evacuation_name,
    new_evacuation_migration,
)
from virtmigrate.controller.evacuation.targets import Targets, plan_node
from virtmigrate.controller.migration.capacity import PRIORITY_EVACUATION, Candidate, Limits, decide_admissions
from virtmigrate.controller.vm.disruption import decide_pdb, new_pdb, pdb_name

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _vm(name: str = "vm", *, strategy: str | None = "LiveMigrate", node: str = "node1", phase: str = "Running",
        running: bool = True, memory: str = "64Mi", evacuation: dict[str, Any] | None = None,
        **spec: Any) -> VM:
    s: dict[str, Any] = {"memory": memory, "running": running, "kernel": "/k", **spec}
    if strategy:
        s["evictionStrategy"] = strategy
    st: dict[str, Any] = {"phase": phase, "node": node}
    if evacuation:
        st["evacuation"] = evacuation
    return VM.parse({"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1"},
                     "spec": s, "status": st})


def _node(name: str, *, unschedulable: bool = False, memory: str = "4Gi", labels: dict[str, str] | None = None,
          taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"allocatable": {"cpu": "2", "memory": memory, "pods": "110"}}}


def _targets(vm: VM, *candidates: str) -> dict[str, Targets]:
    return {vm.key: Targets(vm.key, "node1", candidates=candidates, summary="0/3 nodes are available: ...")}


DRAINING = NodeState("node1", draining=True, condition=None)
DEFAULT = Settings()


# --- the budget -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("vm", "protected"), [
    pytest.param(_vm(strategy="LiveMigrate"), True, id="live-migrate"),
    pytest.param(_vm(strategy="LiveMigrateIfPossible"), True, id="if-possible"),
    pytest.param(_vm(strategy=None), False, id="default-none"),
    pytest.param(_vm(strategy="None"), False, id="none"),
    pytest.param(_vm(running=False), False, id="stopped"),
    pytest.param(_vm(strategy="LiveMigrateIfPossible",
                     evacuation={"node": "node1", "released": True}), False, id="released-for-eviction"),
])
def test_a_budget_protects_exactly_the_vms_that_migrate_on_drain(vm: VM, protected: bool) -> None:
    plan = decide_pdb(vm, [])
    assert (plan.create is not None) == protected


def test_the_budget_allows_no_eviction_of_any_pod_of_the_vm() -> None:
    pdb = new_pdb(_vm())
    assert pdb["spec"] == {"maxUnavailable": 0, "selector": {"matchLabels": {LABEL_VM: "vm"}}}
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == "uid-vm"


def test_a_budget_no_longer_wanted_is_deleted_and_one_present_is_kept() -> None:
    existing = new_pdb(_vm()) | {}
    existing["metadata"] = {**existing["metadata"], "uid": "p1"}
    assert decide_pdb(_vm(strategy="None"), [existing]).delete == ((pdb_name("vm"), "p1"),)
    kept = decide_pdb(_vm(), [existing])
    assert kept.create is None and kept.delete == ()
    assert decide_pdb(None, [existing]).delete == ((pdb_name("vm"), "p1"),)


# --- where VMs can go -------------------------------------------------------------------------------

def test_targets_name_each_node_and_why_not() -> None:
    pinned = _vm("pinned", nodeSelector={"kubernetes.io/hostname": "node1"})
    free = _vm("free")
    nodes = [_node("node0", unschedulable=True), _node("node1", unschedulable=True), _node("node2")]
    t = plan_node([pinned, free], "node1", nodes, [])
    assert t["ns/free"].candidates == ("node2",) and t["ns/free"].planned == "node2"
    assert t["ns/free"].reasons["node0"] == ["is cordoned: spec.unschedulable is true"]
    assert not t["ns/pinned"].movable
    assert "kubernetes.io/hostname=node1 (spec.nodeSelector)" in t["ns/pinned"].why_not()


def test_vms_that_fit_alone_but_not_together_are_reported() -> None:
    big = [_vm(f"vm{i}", memory="1Gi") for i in range(3)]
    nodes = [_node("node1", unschedulable=True), _node("node2", memory="2560Mi")]
    t = plan_node(big, "node1", nodes, [])
    assert all(x.movable for x in t.values())
    assert sorted(x.fits_together for x in t.values()) == [False, True, True]
    lonely = next(x for x in t.values() if not x.fits_together)
    assert lonely.why_not() == "no room left on node2 once the other VMs of node1 have moved there"


# --- the step for one node --------------------------------------------------------------------------

def test_a_cordoned_node_gets_one_evacuation_per_vm_owned_by_the_vm_and_labelled_with_the_node() -> None:
    vm = _vm()
    plan = decide_evacuation(DRAINING, [vm], [], _targets(vm, "node2"), now=NOW)
    assert [(c.vm.name, c.attempt) for c in plan.create] == [("vm", 0)]
    m = new_evacuation_migration(vm, "node1", 0)
    assert m["metadata"]["labels"][LABEL_EVACUATION] == "node1"
    assert m["metadata"]["ownerReferences"][0]["uid"] == "uid-vm"
    assert m["spec"] == {"selector": {"name": "vm"}}
    assert len(evacuation_name(_vm("x" * 80), "node1", 0)) <= 63
    ((_, status),) = plan.vm_status
    assert status is not None and status["reason"] == "Evacuating" and "node2" in status["message"]
    assert plan.condition is not None and plan.condition["type"] == NODE_CONDITION_EVACUATION


@pytest.mark.parametrize("vm", [
    pytest.param(_vm(strategy="None"), id="strategy-none"),
    pytest.param(_vm(strategy=None), id="no-strategy"),
    pytest.param(_vm(node="node0"), id="other-node"),
    pytest.param(_vm(phase="Stopped", running=False), id="not-running"),
])
def test_vms_that_do_not_migrate_or_are_elsewhere_get_no_evacuation(vm: VM) -> None:
    assert decide_evacuation(DRAINING, [vm], [], _targets(vm, "node2"), now=NOW).create == ()


def test_a_vm_with_a_migration_in_flight_waits_for_it() -> None:
    vm = _vm()
    user = MigrationInfo("ns", "mine", "u1", "vm", phase="Running")
    plan = decide_evacuation(DRAINING, [vm], [user], _targets(vm, "node2"), now=NOW)
    assert plan.create == ()
    ((_, status),) = plan.vm_status
    assert status is not None and status["reason"] == "WaitingForMigration"


def test_a_vm_still_migrating_after_its_migration_ended_gets_no_second_one() -> None:
    vm = _vm(phase="Migrating")
    done = MigrationInfo("ns", "e0", "u0", "vm", phase="Succeeded", evacuation_node="node1", attempt=0,
                         finished_at=NOW)
    plan = decide_evacuation(DRAINING, [vm], [done], _targets(vm, "node2"), now=NOW)
    assert plan.create == ()


def test_the_node_says_which_vms_cannot_go_anywhere_before_anything_moves() -> None:
    stuck, ok = _vm("stuck"), _vm("ok")
    targets = {**_targets(ok, "node2"), stuck.key: Targets(stuck.key, "node1", summary="0/3 nodes are available: "
                                                            "1 is the source, 2 is cordoned.")}
    plan = decide_evacuation(DRAINING, [stuck, ok], [], targets, now=NOW)
    assert plan.condition is not None
    assert (plan.condition["status"], plan.condition["reason"]) == ("False", "VMsCannotMove")
    assert "ns/stuck: 0/3 nodes are available" in plan.condition["message"]
    assert plan.node_events[0][:2] == ("Warning", "EvacuationBlocked")
    assert [c.vm.name for c in plan.create] == ["ok"]  # the others still move
    # Written once: the same observation again changes nothing on the Node.
    again = decide_evacuation(NodeState("node1", True, plan.condition), [stuck, ok], [], targets, now=NOW)
    assert again.condition is None and all(e[1] != "EvacuationBlocked" for e in again.node_events)


def test_the_node_says_which_vms_may_not_fit_together_and_still_tries_them() -> None:
    vms = [_vm(f"vm{i}", memory="1Gi") for i in range(3)]
    nodes = [_node("node1", unschedulable=True), _node("node2", memory="2560Mi")]
    plan = decide_evacuation(DRAINING, vms, [], plan_node(vms, "node1", nodes, []), now=NOW)
    assert len(plan.create) == 3
    assert plan.condition is not None and plan.condition["status"] == "False"
    assert "1 VMs may not fit once the others have moved: ns/vm2: no room left on node2" in plan.condition["message"]
    assert plan.node_events[0][1] == "EvacuationBlocked"


def test_if_possible_without_target_is_released_for_eviction_with_a_warning() -> None:
    vm = _vm(strategy="LiveMigrateIfPossible")
    plan = decide_evacuation(DRAINING, [vm], [], {vm.key: Targets(vm.key, "node1", summary="0/3")}, now=NOW)
    assert plan.create == ()
    ((_, status),) = plan.vm_status
    assert status is not None and status["released"] is True
    assert [(e[1], e[2]) for e in plan.vm_events] == [("Warning", "EvacuationImpossible")]
    assert decide_pdb(_vm(strategy="LiveMigrateIfPossible", evacuation=status), []).create is None


def test_a_failed_evacuation_is_retried_after_a_growing_back_off() -> None:
    vm = _vm()
    failed = [MigrationInfo("ns", f"e{i}", f"u{i}", "vm", phase="Failed", evacuation_node="node1", attempt=i,
                            finished_at=NOW, reason="NoProgress") for i in range(2)]
    assert backoff_s(1, DEFAULT) == 10 and backoff_s(2, DEFAULT) == 20 and backoff_s(10, DEFAULT) == 300
    early = decide_evacuation(DRAINING, [vm], failed, _targets(vm, "node2"), now=NOW + timedelta(seconds=5))
    assert early.create == () and early.requeue_after == pytest.approx(15)
    ((_, status),) = early.vm_status
    assert status is not None and status["reason"] == "RetryBackoff" and "NoProgress" in status["message"]
    late = decide_evacuation(DRAINING, [vm], failed, _targets(vm, "node2"), now=NOW + timedelta(seconds=21))
    assert [c.attempt for c in late.create] == [2]


def test_uncordon_deletes_evacuations_not_started_lets_running_ones_finish_and_creates_nothing() -> None:
    vm = _vm(evacuation={"node": "node1", "reason": "Evacuating"})
    migs = [MigrationInfo("ns", "pending", "u1", "vm", phase="Pending", evacuation_node="node1"),
            MigrationInfo("ns", "new", "u2", "vm", phase="", evacuation_node="node1"),
            MigrationInfo("ns", "running", "u3", "vm", phase="Running", evacuation_node="node1"),
            MigrationInfo("ns", "ready", "u5", "vm", phase="TargetReady", evacuation_node="node1"),  # job starting
            MigrationInfo("ns", "user", "u4", "vm", phase="Pending")]
    cond = {"type": NODE_CONDITION_EVACUATION, "status": "True"}
    plan = decide_evacuation(NodeState("node1", False, cond), [vm], migs, _targets(vm, "node2"), now=NOW)
    assert sorted(m.name for m in plan.delete) == ["new", "pending"]
    assert plan.create == () and plan.remove_condition
    assert plan.vm_status == ((vm, None),)
    assert plan.node_events[0][1] == "EvacuationCancelled"


def test_a_vm_that_left_loses_its_mark() -> None:
    vm = _vm(node="node2", evacuation={"node": "node1", "reason": "Evacuating"})
    plan = decide_evacuation(DRAINING, [vm], [], {}, now=NOW)
    assert plan.vm_status == ((vm, None),) and plan.create == ()
    assert plan.condition is not None and plan.condition["reason"] == "Evacuated"


# --- capacity ---------------------------------------------------------------------------------------

def test_evacuations_are_admitted_before_older_user_migrations() -> None:
    cands = [Candidate("ns/user", "2026-01-01T00:00:00Z", "node0", active=False),
             Candidate("ns/evac", "2026-01-01T00:00:09Z", "node1", active=False, priority=PRIORITY_EVACUATION)]
    out = decide_admissions(cands, Limits(max_running=1, max_per_node=1))
    assert out["ns/evac"].admit and not out["ns/user"].admit
