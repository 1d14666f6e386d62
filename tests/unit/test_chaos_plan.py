"""The chaos campaign's plans: replayable from (seed, round) alone, and a default campaign covers every fault."""

from __future__ import annotations

from collections import Counter

from tests.chaos.plan import Fault, Trigger, copy_seconds, plan_round


def test_a_round_is_replayed_from_seed_and_round_alone() -> None:
    assert plan_round(7, 37, vms=3, memory_mib=48) == plan_round(7, 37, vms=3, memory_mib=48)
    assert plan_round(7, 37, vms=3, memory_mib=48).replay() == "make chaos SEED=7 ROUND=37"
    assert len({plan_round(seed, 37, vms=3, memory_mib=48) for seed in range(20)}) > 15


def test_two_hundred_rounds_cover_every_fault_with_forty_agent_kills() -> None:
    plans = [plan_round(1, r, vms=3, memory_mib=48) for r in range(200)]
    kinds = Counter(p.fault for p in plans)
    assert set(kinds) == set(Fault)
    assert kinds[Fault.AGENT_KILL] >= 40
    races = [p for p in plans if p.cancel and p.fault != Fault.CANCEL]
    assert {p.fault for p in races} >= set(Fault) - {Fault.NONE, Fault.CANCEL}
    assert {(p.fault, p.side) for p in plans} >= {(Fault.LAUNCHER_KILL, "source"), (Fault.LAUNCHER_KILL, "target"),
                                                  (Fault.LIBVIRTD_KILL, "source"), (Fault.LIBVIRTD_KILL, "target")}


def test_agent_kills_fall_before_during_and_after_the_copy() -> None:
    kills = [p for p in (plan_round(1, r, vms=3, memory_mib=48) for r in range(400)) if p.fault == Fault.AGENT_KILL]
    assert all(p.trigger == Trigger.AGENT_STARTED for p in kills)
    ratios = [p.delay_s / copy_seconds(48, p.bandwidths[p.victim]) for p in kills]
    assert any(r < 0.2 for r in ratios)         # before the copy is under way
    assert any(0.4 < r < 0.9 for r in ratios)   # during it
    assert any(r > 1.1 for r in ratios)         # after the switch-over


def test_a_skipped_fault_is_never_drawn_and_the_replay_says_so() -> None:
    skip = frozenset({Fault.NODE_RUNNER_KILL})
    plans = [plan_round(1, r, vms=3, memory_mib=48, skip=skip) for r in range(200)]
    assert Fault.NODE_RUNNER_KILL not in {p.fault for p in plans}
    assert plans[5].replay() == "make chaos SEED=1 ROUND=5 SKIP_FAULTS=noderunner-kill"
