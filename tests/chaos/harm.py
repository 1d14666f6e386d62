"""The harm of one round: wait for the plan's trigger on the victim, sleep the delay, do the damage, and then
what a supervisor would do (restart the controller, the node runner or the API server after the plan's
pause). Also the cancel that races it. Runs on threads of its own while campaign.py watches the Migrations;
each writes only its own fields of the shared `RoundState`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos import faults
from tests.chaos.facts import PodWatch, node_domains
from tests.chaos.invariants import Kind, Violation
from tests.chaos.plan import Fault, RoundPlan, Trigger
from tests.chaos.report import RoundResult, switchover_moment
from virtmigrate import errors
from virtmigrate.api.constants import ROLE_AGENT, ROLE_LAUNCHER
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import PODS

TRIGGER_TIMEOUT_S = 60.0       # the victim reaches the plan's trigger within this, or the fault is "missed"
LIBVIRTD_SUPERVISION_S = 10.0  # a killed libvirtd must be back within this (systemd restarts in ~0.1 s)
AGENT_POD_GONE_S = 45.0        # a deleted agent pod is gone within this (its grace period and a margin)
CANCEL_RETRY_S = 60.0          # a cancel is retried this long while the API server is down


def _now() -> float:
    return time.monotonic()


@dataclass
class RoundState:
    """What the threads of one round share (each field written by one thread)."""

    plan: RoundPlan
    t0: float
    names: dict[str, str]              # vm -> Migration name
    uids: dict[str, str]               # vm -> Migration UID
    source: dict[str, str]             # vm -> node before the round
    launcher: dict[str, str]           # vm -> its launcher pod before the round
    beats: dict[str, int]              # vm -> heartbeat counter before the round
    result: RoundResult
    targets: dict[str, str] = field(default_factory=dict)   # vm -> status.targetNode as last seen
    last_phase: dict[str, str] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    harmed_node: str = ""                                   # the node whose libvirtd the fault killed
    sticky: list[Violation] = field(default_factory=list)   # seen during the round; recovery cannot undo them

    @property
    def victim(self) -> str:
        return f"vm{self.plan.victim}"


@dataclass
class Harm:
    """Does a round's harm to the cluster `lc`, aiming at pods found by `watch` in `namespace`."""

    lc: Any
    client: KubeClient
    namespace: str
    watch: PodWatch

    def wait_trigger(self, rd: RoundState, vm: str) -> float | None:
        name = rd.names[vm]
        deadline = rd.t0 + TRIGGER_TIMEOUT_S
        if rd.plan.trigger == Trigger.CREATED:
            return rd.t0
        while _now() < deadline:
            if rd.plan.trigger == Trigger.TARGET_POD and self.watch.find(role=ROLE_LAUNCHER, migration=name):
                return _now()
            if rd.plan.trigger == Trigger.AGENT_STARTED:
                for a in self.watch.find(role=ROLE_AGENT, migration=name):
                    if faults.container_pid(self.lc, a.uid, a.container) is not None:
                        return _now()
            if rd.last_phase.get(vm) in ("Succeeded", "Failed"):
                return None  # over before the trigger: the harm has nothing to aim at
            time.sleep(0.01)
        return None

    def run(self, rd: RoundState) -> None:
        try:
            self._harm(rd)
        except Exception as e:  # a harness error shows in the round instead of ending the campaign
            rd.result.injected += f"; harness error: {e!r}"

    def _harm(self, rd: RoundState) -> None:
        plan, res = rd.plan, rd.result
        vm = rd.victim
        t = self.wait_trigger(rd, vm)
        if t is None:
            res.injected = f"missed: the victim never reached {plan.trigger}"
            return
        res.trigger_at = t - rd.t0
        time.sleep(max(0.0, t + plan.delay_s - _now()))
        res.moment = self._moment(rd, vm)
        res.fault_at = _now() - rd.t0
        lc, name = self.lc, rd.names[vm]
        if plan.fault == Fault.NONE:
            res.injected, res.effective = "nothing (control round)", True
        elif plan.fault == Fault.AGENT_KILL:
            agents = self.watch.find(role=ROLE_AGENT, migration=name)
            pid = faults.kill_container(lc, agents[-1].uid, agents[-1].container) if agents else None
            res.injected = f"SIGKILL agent pid {pid}" if pid else "missed: the agent had exited"
            res.effective = pid is not None
        elif plan.fault in (Fault.CONTROLLER_KILL, Fault.NODE_RUNNER_KILL):
            what = "controller" if plan.fault == Fault.CONTROLLER_KILL else "noderunner"
            k = faults.kill_supervised(lc, what)
            res.injected, res.effective = (f"SIGKILL {what} pid {k.pid}" if k else f"missed: no {what}"), k is not None
            time.sleep(plan.pause_s)
            if k is not None:
                k.restart(lc)
                res.injected += f", restarted after {plan.pause_s:.2f}s"
        elif plan.fault == Fault.LAUNCHER_KILL:
            recs = self.watch.by_name(rd.launcher[vm]) if plan.side == "source" else \
                self.watch.find(role=ROLE_LAUNCHER, migration=name)
            pid = faults.kill_container(lc, recs[-1].uid, recs[-1].container) if recs else None
            res.injected = f"SIGKILL {plan.side} launcher pid {pid}" if pid else f"missed: no {plan.side} launcher ran"
            res.effective = pid is not None
        elif plan.fault == Fault.LIBVIRTD_KILL:
            self._kill_libvirtd(rd, vm)
        elif plan.fault == Fault.APISERVER_RESTART:
            pid = faults.kill_apiserver(lc)
            time.sleep(plan.pause_s)
            faults.restart_apiserver(lc)
            res.injected, res.effective = f"SIGKILL kube-apiserver pid {pid}, restarted after {plan.pause_s:.2f}s", True
        elif plan.fault == Fault.AGENT_POD_DELETED:
            self._delete_agent_pod_controller_down(rd, vm)
        elif plan.fault == Fault.CANCEL:
            self.cancel(rd, vm)
            res.injected, res.effective = "kubectl delete migration", True

    def _moment(self, rd: RoundState, vm: str) -> str:
        """Where the victim's migration stands as the harm starts, read from libvirt (about 0.1 s before it)."""
        dom = f"{self.namespace}_{vm}"
        states = {n: (d or {}).get(dom, "") for n, d in node_domains(self.lc).items()}
        other = sorted((st for n, st in states.items() if n != rd.source[vm] and st), key=lambda st: st != "running")
        return switchover_moment(states.get(rd.source[vm], ""), other[0] if other else "")

    def _kill_libvirtd(self, rd: RoundState, vm: str) -> None:
        res, plan = rd.result, rd.plan
        node = rd.source[vm]
        if plan.side == "target":
            node = ""
            deadline = _now() + 10
            while not node and _now() < deadline:
                recs = self.watch.find(role=ROLE_LAUNCHER, migration=rd.names[vm])
                node = rd.targets.get(vm) or next((r.node for r in recs if r.node), "")
                time.sleep(0.05)
            if not node:
                res.injected = "missed: the target node was never chosen"
                return
        pid = faults.kill_libvirtd(self.lc, node)
        rd.harmed_node = node
        res.injected, res.effective = f"SIGKILL libvirtd of {node} ({plan.side}; pid {pid})", pid is not None
        deadline = _now() + LIBVIRTD_SUPERVISION_S
        while _now() < deadline and not faults.libvirtd_back(self.lc, node):
            time.sleep(0.2)
        if not faults.libvirtd_back(self.lc, node):
            rd.sticky.append(Violation(Kind.LIBVIRTD_NOT_RESTARTED, "",
                                       f"{node}: not back {LIBVIRTD_SUPERVISION_S:.0f}s after the kill "
                                       "(no supervisor); the harness restarted it"))
            faults.restore_libvirtd(self.lc)

    def _delete_agent_pod_controller_down(self, rd: RoundState, vm: str) -> None:
        res = rd.result
        agents = self.watch.find(role=ROLE_AGENT, migration=rd.names[vm])
        k = faults.kill_supervised(self.lc, "controller")
        r = faults.kubectl(self.lc, "-n", self.namespace, "delete", "pod", agents[-1].name, "--wait=false") \
            if agents else None
        deadline = _now() + AGENT_POD_GONE_S
        gone = False
        while agents and _now() < deadline and not gone:
            try:
                pod = self.client.get(PODS, agents[-1].name, self.namespace)
                # The agent-outcome finalizer keeps a deleted agent pod (Terminating, its process ended)
                # until the controller recorded the outcome: deleted, as far as anyone can delete it.
                gone = bool(pod["metadata"].get("deletionTimestamp")) and (pod.get("status") or {}).get(
                    "phase") in ("Succeeded", "Failed")
                if not gone:
                    time.sleep(0.1)
            except errors.NotFound:
                gone = True
            except errors.KubeError:
                time.sleep(0.1)
        time.sleep(rd.plan.pause_s)
        if k is not None:
            k.restart(self.lc)
        res.injected = (f"SIGKILL controller pid {k.pid if k else None}, kubectl delete pod "
                        f"{agents[-1].name if agents else '-'} ({'ok' if r and r.returncode == 0 else 'failed'}, "
                        f"{'gone' if gone else 'not gone'}), controller restarted after {rd.plan.pause_s:.2f}s")
        res.effective = k is not None and gone

    def cancel(self, rd: RoundState, vm: str) -> None:
        """`kubectl delete migration --wait=false`, retried while the API server is down (as a user would)."""
        rd.cancelled.add(vm)
        deadline = _now() + CANCEL_RETRY_S
        while _now() < deadline:
            r = faults.kubectl(self.lc, "-n", self.namespace, "delete", "migration", rd.names[vm], "--wait=false",
                               "--ignore-not-found")
            if r.returncode == 0:
                return
            time.sleep(0.5)

    def cancel_race(self, rd: RoundState) -> None:
        vm = rd.victim
        t = self.wait_trigger(rd, vm)
        if t is None:
            t = _now()
        time.sleep(max(0.0, t + rd.plan.delay_s + rd.plan.cancel_offset_s - _now()))
        self.cancel(rd, vm)

