"""The seeded chaos campaign's short subset (make chaos runs the whole): eight rounds of seed 11, each migrating
three VMs at once while one of them is harmed — the agent SIGKILLed before, at and after the switch-over, the
agent pod deleted while the controller is down, the controller killed with a cancel racing it, the
target's libvirtd killed with a cancel racing it, the target's launcher SIGKILLed during the copy (a witness
on its node settles the outcome) and the node runner SIGKILLed during the copy (it adopts its containers).
After each round every guest runs on exactly one node and beats there, its VM says so, every Migration is
terminal (or gone after its cancel) with the outcome the guest shows, no Migration had two agent pods, and
nothing is left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.campaign import Campaign
from tests.chaos.plan import Fault, plan_round

SEED = 11
ROUNDS = (0, 8, 25, 31, 24, 22, 77, 46)
RECOVERY_BOUND_S = 60.0


def test_chaos_subset_keeps_every_guest_in_exactly_one_place(local_cluster: Any, guest_kernel: Path) -> None:
    plans = [plan_round(SEED, r, vms=3, memory_mib=48) for r in ROUNDS]
    assert [(p.fault, p.cancel) for p in plans] == [  # what the docstring promises this subset covers
        (Fault.AGENT_KILL, False), (Fault.AGENT_KILL, False), (Fault.AGENT_KILL, False),
        (Fault.AGENT_POD_DELETED, False), (Fault.CONTROLLER_KILL, True), (Fault.LIBVIRTD_KILL, True),
        (Fault.LAUNCHER_KILL, False), (Fault.NODE_RUNNER_KILL, False)]
    assert plans[6].side == "target"
    lines: list[str] = []
    c = Campaign(local_cluster, seed=SEED, kernel=guest_kernel, vms=3, log=lines.append,
                 recovery_bound_s=RECOVERY_BOUND_S)
    try:
        c.setup()
        summary = c.run(ROUNDS)
    finally:
        c.teardown()
        local_cluster.up()  # every process of the shared e2e cluster running again, whatever a round did
    report = "\n".join([*lines, summary.text()])
    assert sum(1 for r in summary.results if r.effective) >= 7, report  # the harm really happened
    if summary.violations:
        pytest.fail(f"{len(summary.violations)} violations\n{report}", pytrace=False)
