"""A round's plan, a pure function of (seed, round): which fault, on which Migration, at which moment.

Consumed by campaign.py. Each round draws from its own `random.Random(f"{seed}/{round}")`, so
`make chaos SEED=s ROUND=r` replays round r's plan alone, whatever ran before it (the cluster's timing is real
and is not replayed: the plan is). Weights give about a quarter of the rounds to agent kills, the fault the
issue is about; every other kind of harm gets at least one round in twenty.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Fault(enum.StrEnum):
    NONE = "none"                                     # a control round: nothing is harmed
    AGENT_KILL = "agent-kill"                         # SIGKILL of the victim's agent process
    CONTROLLER_KILL = "controller-kill"               # SIGKILL of the controller; restarted after a pause
    LAUNCHER_KILL = "launcher-kill"                   # SIGKILL of the victim's source or target launcher
    LIBVIRTD_KILL = "libvirtd-kill"                   # SIGKILL of the victim's source or target libvirtd
    NODE_RUNNER_KILL = "noderunner-kill"              # SIGKILL of the node runner (every node's kubelet)
    APISERVER_RESTART = "apiserver-restart"           # SIGKILL of kube-apiserver; restarted after a pause
    AGENT_POD_DELETED = "agent-pod-deleted-controller-down"  # controller killed, agent pod deleted, restart
    CANCEL = "cancel"                                 # `kubectl delete migration` of the victim


class Trigger(enum.StrEnum):
    CREATED = "created"              # the victim's Migration was created
    TARGET_POD = "target-pod"        # the victim's target launcher pod exists
    AGENT_STARTED = "agent-started"  # the victim's agent process runs (its pid file appeared)


WEIGHTS: dict[Fault, int] = {
    Fault.NONE: 3, Fault.AGENT_KILL: 28, Fault.CONTROLLER_KILL: 10, Fault.LAUNCHER_KILL: 12,
    Fault.LIBVIRTD_KILL: 12, Fault.NODE_RUNNER_KILL: 6, Fault.APISERVER_RESTART: 9,
    Fault.AGENT_POD_DELETED: 10, Fault.CANCEL: 10,
}
BANDWIDTHS_MIB_S = (0, 16, 32, 64)  # 0 = unlimited (about 0.5 s for the pool's guests)
CANCEL_RACE_P = 0.2                  # share of harmful rounds where a cancel of the victim races the fault
UNLIMITED_COPY_S = 0.6               # a guest's copy without a cap, seconds (shared/notes/libvirt-hosts.md)


@dataclass(frozen=True)
class RoundPlan:
    seed: int
    round: int
    fault: Fault
    victim: int                 # index of the harmed Migration among the round's VMs
    side: str                   # "source" or "target": whose launcher or libvirtd (other faults: "")
    trigger: Trigger
    delay_s: float              # from the trigger to the fault
    pause_s: float              # how long a killed supervised component stays down before its restart
    cancel: bool                # a cancel of the victim races the fault
    cancel_offset_s: float      # the cancel's time relative to the fault (negative: before it)
    bandwidths: tuple[int, ...]  # spec.bandwidthMiBps per VM (0: not set, unlimited)
    skip: frozenset[Fault] = frozenset()  # the fault kinds the campaign leaves out (part of the replay)

    @property
    def label(self) -> str:
        """The fault with its side, e.g. "libvirtd-kill/target"."""
        return f"{self.fault}/{self.side}" if self.side else str(self.fault)

    def describe(self) -> str:
        parts = [f"fault={self.fault}", f"victim=vm{self.victim}"]
        if self.side:
            parts.append(f"side={self.side}")
        parts.append(f"at={self.trigger}+{self.delay_s:.2f}s")
        if self.pause_s:
            parts.append(f"down={self.pause_s:.2f}s")
        if self.cancel:
            parts.append(f"cancel={self.cancel_offset_s:+.2f}s")
        parts.append("bw=" + ",".join(str(b) for b in self.bandwidths))
        return " ".join(parts)

    def replay(self) -> str:
        skip = f" SKIP_FAULTS={','.join(sorted(self.skip))}" if self.skip else ""
        return f"make chaos SEED={self.seed} ROUND={self.round}{skip}"


def copy_seconds(memory_mib: int, bandwidth_mib_s: int) -> float:
    """About how long the copy of a guest of `memory_mib` takes at a cap (0: unlimited)."""
    return UNLIMITED_COPY_S if bandwidth_mib_s <= 0 else memory_mib / bandwidth_mib_s


def plan_round(seed: int, round_no: int, *, vms: int, memory_mib: int,
               skip: frozenset[Fault] = frozenset()) -> RoundPlan:
    """The plan of round `round_no` of the campaign `seed` for a pool of `vms` VMs, never drawing a fault of
    `skip` (pure; the same `skip` replays the same plan)."""
    rng = random.Random(f"{seed}/{round_no}")
    kinds = [k for k in WEIGHTS if k not in skip]
    if not kinds:
        raise ValueError("every fault is skipped: nothing to plan")
    fault = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
    victim = rng.randrange(vms)
    bandwidths = tuple(rng.choice(BANDWIDTHS_MIB_S) for _ in range(vms))
    side = rng.choice(("source", "target")) if fault in (Fault.LAUNCHER_KILL, Fault.LIBVIRTD_KILL) else ""
    if fault in (Fault.AGENT_KILL, Fault.AGENT_POD_DELETED):
        # Spread over before, during and after the switch-over: the copy plus a margin on both sides.
        trigger = Trigger.AGENT_STARTED
        delay = rng.uniform(0.0, 1.3 * copy_seconds(memory_mib, bandwidths[victim]) + 0.6)
    else:
        trigger = rng.choices(list(Trigger), weights=[1, 1, 2])[0]
        delay = rng.uniform(0.0, 2.0)
    pause = {Fault.CONTROLLER_KILL: rng.uniform(0.0, 5.0), Fault.NODE_RUNNER_KILL: rng.uniform(0.0, 3.0),
             Fault.APISERVER_RESTART: rng.uniform(0.0, 3.0),
             Fault.AGENT_POD_DELETED: rng.uniform(0.5, 4.0)}.get(fault, 0.0)
    cancel = fault == Fault.CANCEL or (fault != Fault.NONE and rng.random() < CANCEL_RACE_P)
    offset = rng.uniform(-1.0, 1.5) if cancel and fault != Fault.CANCEL else 0.0
    return RoundPlan(seed=seed, round=round_no, fault=fault, victim=victim, side=side, trigger=trigger,
                     delay_s=round(delay, 3), pause_s=round(pause, 3), cancel=cancel,
                     cancel_offset_s=round(offset, 3), bandwidths=bandwidths, skip=skip)
