"""The chaos campaign's judge: each way of losing, doubling or misreporting a guest is named, and a healthy
end of a round is not."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from tests.chaos.facts import PodRecord, Snapshot
from tests.chaos.invariants import Expect, Kind, violations

NS = "chaos-1"
DOM = f"{NS}_vm0"


def _pod(name: str, node: str, role: str = "launcher", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"virtmigrate.kubevirt.io/vm": "vm0",
                                                  "virtmigrate.kubevirt.io/role": role}, **meta},
            "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def _healthy() -> Snapshot:
    """vm0 moved from node0 to node1: Succeeded, VM Running on node1, the target launcher holds it."""
    return Snapshot(
        taken=0.0,
        domains={"node0": {}, "node1": {DOM: "running"}, "node2": {}},
        vms={"vm0": {"metadata": {"name": "vm0"},
                     "status": {"phase": "Running", "node": "node1", "launcherPod": "target-pod"}}},
        migrations={"r1-vm0": {"metadata": {"name": "r1-vm0", "uid": "m-1"},
                               "status": {"phase": "Succeeded", "reason": "Migrated", "sourceNode": "node0",
                                          "targetNode": "node1"}}},
        pods=[_pod("target-pod", "node1")],
        nodes_ready={"node0": True, "node1": True, "node2": True})


EXPECT = Expect(vm="vm0", domain=DOM, migration="r1-vm0", migration_uid="m-1", source="node0", target="node1",
                cancelled=False, touched=True, heartbeat_before=40)


def _kinds(s: Snapshot, e: Expect = EXPECT, *, agents: int = 1, beat: int | None = 43) -> set[Kind]:
    pods = [PodRecord(f"a{i}", "agent", "agent", e.migration, e.migration_uid, e.source, "agent")
            for i in range(agents)]
    return {v.kind for v in violations(s, [e], agent_pods={e.migration_uid: pods}, heartbeats={"vm0": beat})}


def test_a_healthy_end_of_round_has_no_violation() -> None:
    assert _kinds(_healthy()) == set()


def _failed_but_guest_on_target(s: Snapshot) -> None:
    """The issue's bug: agent killed, guest landed on the target, the controller says Failed on the source."""
    s.migrations["r1-vm0"]["status"].update(phase="Failed", reason="AgentFailed")
    s.vms["vm0"]["status"].update(node="node0", launcherPod="source-pod")
    s.pods = [_pod("source-pod", "node0")]


def _doubled(s: Snapshot) -> None:
    s.domains["node0"] = {DOM: "running"}


def _lost_but_running(s: Snapshot) -> None:
    s.domains["node1"] = {}


def _paused_leftover(s: Snapshot) -> None:
    s.domains["node0"] = {DOM: "paused"}


def _cancel_stuck(s: Snapshot) -> None:
    s.migrations["r1-vm0"]["metadata"]["finalizers"] = ["virtmigrate.kubevirt.io/cancel"]


def _stray_agent(s: Snapshot) -> None:
    s.pods.append(_pod("agent-pod", "node0", role="agent"))


def _libvirtd_down(s: Snapshot) -> None:
    s.domains["node2"] = None


@pytest.mark.parametrize(("change", "expect", "kinds"), [
    pytest.param(_failed_but_guest_on_target, EXPECT,
                 {Kind.OUTCOME_MISMATCH, Kind.VM_STATUS_WRONG, Kind.STRAY_PODS}, id="failed-guest-on-target"),
    pytest.param(_doubled, EXPECT, {Kind.GUEST_DOUBLED, Kind.VM_STATUS_WRONG, Kind.STRAY_PODS}, id="doubled"),
    pytest.param(_lost_but_running, EXPECT, {Kind.GUEST_NOT_RUNNING, Kind.VM_STATUS_WRONG, Kind.STRAY_PODS},
                 id="lost-vm-says-running"),
    pytest.param(_paused_leftover, EXPECT, {Kind.LEFTOVER_DOMAIN}, id="paused-leftover-on-source"),
    pytest.param(_cancel_stuck, dataclasses.replace(EXPECT, cancelled=True), {Kind.CANCEL_NOT_DONE},
                 id="cancel-finalizer-stuck"),
    pytest.param(_stray_agent, EXPECT, {Kind.STRAY_PODS}, id="agent-pod-left"),
    pytest.param(_libvirtd_down, EXPECT, {Kind.LIBVIRTD_DOWN}, id="libvirtd-unreachable"),
])
def test_each_broken_promise_is_named(change: Any, expect: Expect, kinds: set[Kind]) -> None:
    s = copy.deepcopy(_healthy())
    change(s)
    assert _kinds(s, expect) == kinds


def test_a_rebooted_guest_two_agents_and_an_untouched_failure_are_named() -> None:
    assert _kinds(_healthy(), beat=3) == {Kind.GUEST_RESTARTED}
    assert _kinds(_healthy(), agents=2) == {Kind.TWO_AGENT_PODS}
    s = copy.deepcopy(_healthy())
    s.migrations["r1-vm0"]["status"].update(phase="Failed", reason="MigrationFailed")
    s.vms["vm0"]["status"].update(node="node0", launcherPod="source-pod")
    s.domains = {"node0": {DOM: "running"}, "node1": {}, "node2": {}}
    s.pods = [_pod("source-pod", "node0")]
    untouched = dataclasses.replace(EXPECT, touched=False)
    assert _kinds(s, untouched) == {Kind.UNEXPECTED_FAILURE}
    assert _kinds(s, EXPECT) == set()  # the same outcome is fine when the fault hit this Migration


def test_a_never_started_record_libvirt_refuses_to_remove_is_no_violation_only_once_the_vm_says_so() -> None:
    """libvirt 9.0 keeps a record of a copy whose QEMU never ran (status pid 0) and refuses to destroy it: no
    guest runs there. The product must say so on the VM (LeftoverRefused); until it does, it is a leftover."""
    s = _healthy()
    s.domains["node0"] = {DOM: "paused"}
    s = dataclasses.replace(s, never_started=frozenset({("node0", DOM)}))
    assert _kinds(s) == {Kind.LEFTOVER_DOMAIN}  # not reported yet
    assert _kinds(dataclasses.replace(s, refused_warned=frozenset({"vm0"}))) == set()
    # a paused copy that is not such a record stays a leftover, warned or not
    other = dataclasses.replace(_healthy(), refused_warned=frozenset({"vm0"}))
    other.domains["node0"] = {DOM: "paused"}
    assert _kinds(other) == {Kind.LEFTOVER_DOMAIN}
