"""The early agent: created once the target pod is bound, it starts the job only when its Migration says
TargetReady (agent/gate.py `verdict`, pure), and the phase machine (decide.py) creates it in Scheduled,
stops it when the target fails, and reads the guest's place from the nodes when it ends early."""

from __future__ import annotations

import pytest

from tests.unit.migration_literals import (
    AGENT_RUN,
    SRC,
    TGT_BOUND,
    TGT_WAITING,
    VM_OURS,
    agent_exited,
    exited,
    obs,
    tgt,
)
from virtmigrate.agent.gate import Verdict, verdict
from virtmigrate.agent.settings import parse_settings
from virtmigrate.api.constants import MigrationPhase as P
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.controller.migration.decide import Action, Decision, Timeouts, decide
from virtmigrate.errors import ConfigError

UID = "mig-uid"
T = Timeouts(settle_s=3.0, pending_s=900.0)


def migration(phase: str = "", *, uid: str = UID, deleting: bool = False, reason: str = "") -> dict[str, object]:
    meta: dict[str, object] = {"name": "m", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "reason": reason} if phase else {}}


# --- the agent's verdict --------------------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["TargetReady", "Running"])
def test_the_agent_goes_once_its_migration_says_the_target_is_ready(phase: str) -> None:
    assert verdict(migration(phase), UID, "m")[0] == Verdict.GO


@pytest.mark.parametrize("phase", ["", "Pending", "Scheduling", "Scheduled"])
def test_the_agent_waits_while_the_target_is_not_ready(phase: str) -> None:
    assert verdict(migration(phase), UID, "m")[0] == Verdict.WAIT


@pytest.mark.parametrize(("obj", "words"), [
    (None, "was deleted before its target was ready"),
    (migration("Scheduled", uid="other"), "was replaced"),
    (migration("Scheduled", deleting=True), "cancelled"),
    (migration("Failed", reason="TargetTimeout"), "ended Failed before its target was ready: TargetTimeout"),
])
def test_the_agent_stops_untouched_when_its_target_never_will_be_ready(obj: dict[str, object] | None,
                                                                       words: str) -> None:
    v, why = verdict(obj, UID, "m")
    assert v == Verdict.STOP and words in why and "'m'" in why


def test_a_cancelled_migration_stops_even_a_ready_agent() -> None:
    """A deletion wins over TargetReady: the agent must not start a job its Migration no longer wants."""
    assert verdict(migration("TargetReady", deleting=True), UID, "m")[0] == Verdict.STOP


def test_await_target_needs_the_migration_it_waits_for() -> None:
    base = ["--domain=d", "--destination-uri=qemu+tcp://h/system"]
    s = parse_settings([*base, "--migration=m", "--namespace=ns", "--await-target-uid=u"], {})
    assert (s.await_target_uid, s.await_target_timeout_s) == ("u", 1800.0)
    with pytest.raises(ConfigError, match="--migration: required with --await-target-uid"):
        parse_settings([*base, "--await-target-uid=u"], {})


# --- the phase machine -----------------------------------------------------------------------------------

def scheduled(**kw: object) -> object:
    return obs(**{"phase": P.SCHEDULED, "vm": VM_OURS, "source_pod": SRC, "early_agent": True, **kw})


def test_the_agent_is_created_as_soon_as_the_target_pod_is_bound() -> None:
    d: Decision = decide(scheduled(target_pod=TGT_BOUND), T)  # type: ignore[arg-type]
    assert d.action == Action.CREATE_AGENT_POD


def test_without_api_access_the_agent_waits_for_target_ready_as_before() -> None:
    d: Decision = decide(scheduled(target_pod=TGT_BOUND, early_agent=False), T)  # type: ignore[arg-type]
    assert d.action == Action.NOTHING
    d = decide(scheduled(target_pod=TGT_WAITING, early_agent=False), T)  # type: ignore[arg-type]
    assert (d.action, d.phase) == (Action.SET_PHASE, P.TARGET_READY)


def test_a_waiting_agent_lets_the_target_report_move_the_migration_on() -> None:
    d: Decision = decide(scheduled(target_pod=TGT_WAITING, agent_pod=AGENT_RUN), T)  # type: ignore[arg-type]
    assert (d.action, d.phase) == (Action.SET_PHASE, P.TARGET_READY)
    ready: Decision = decide(obs(phase=P.TARGET_READY, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING,
                                 agent_pod=AGENT_RUN, early_agent=True), T)
    assert (ready.action, ready.phase) == (Action.SET_PHASE, P.RUNNING)


def test_a_refused_destination_fails_before_any_agent_exists() -> None:
    d: Decision = decide(scheduled(target_pod=TGT_BOUND, destination_error="node node1 has no libvirt URI"), T)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (Action.FAIL, "NoDestinationURI")


def test_a_target_that_fails_while_the_agent_waits_fails_the_migration() -> None:
    broken = tgt(None, **exited("LibvirtUnreachable", 10))
    d: Decision = decide(scheduled(target_pod=broken, agent_pod=AGENT_RUN), T)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (Action.FAIL, "TargetPodFailed")
    gone: Decision = decide(scheduled(target_pod=TGT_BOUND, agent_pod=AGENT_RUN, phase_age_s=T.pending_s), T)  # type: ignore[arg-type]
    assert (gone.action, gone.reason) == (Action.FAIL, "TargetNotReady")


def test_an_agent_that_ended_before_the_target_was_ready_is_judged_by_the_nodes() -> None:
    """It should not have touched the guest, but that is read from the launchers, never assumed."""
    untouched = agent_exited(int(ExitCode.CANCELLED), "the guest was not touched")
    d: Decision = decide(scheduled(target_pod=TGT_WAITING, agent_pod=untouched), T)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (Action.FAIL, "Cancelled")  # a claim the source's report confirms
    killed = scheduled(target_pod=TGT_WAITING, agent_pod=agent_exited(137, "Killed"), agent_end_age_s=T.settle_s)
    d = decide(killed, T)  # type: ignore[arg-type]
    assert (d.action, d.reason) == (Action.FAIL, "AgentFailed") and "source" in d.message


# --- the agent's outcome, written on the Migration as its job ends ------------------------------------------

def test_an_outcome_written_on_the_migration_decides_before_the_pod_reports_its_exit() -> None:
    """A kubelet reports a container's end at its next relist; the agent's own word on the Migration
    (status.agentOutcome) arrives first, and is checked against the nodes like an exit code."""
    from tests.unit.migration_literals import RUNS, SRC_LEFT

    claim = (0, '{"outcome":"succeeded","exitCode":0,"message":"migrated"}')
    landed = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC_LEFT, target_pod=tgt(RUNS, ready=True),
                 agent_pod=AGENT_RUN, agent_exit=claim)
    d: Decision = decide(landed, T)
    assert (d.action, d.reason) == (Action.SUCCEED, "Migrated")
    unconfirmed = obs(phase=P.RUNNING, vm=VM_OURS, source_pod=SRC, target_pod=TGT_WAITING, agent_pod=AGENT_RUN,
                      agent_exit=claim, agent_end_seen_s=0.0)
    assert decide(unconfirmed, T).action == Action.NOTHING  # the nodes disagree: the reports get their wait


def test_the_outcome_is_read_from_the_migration_status() -> None:
    from virtmigrate.controller.migration.observe import _agent_outcome

    assert _agent_outcome({"agentOutcome": {"exitCode": 23, "terminationMessage": "{}"}}) == (23, "{}")
    assert _agent_outcome({"agentOutcome": {"terminationMessage": "{}"}}) is None
    assert _agent_outcome({}) is None


def test_the_early_start_is_the_default_and_can_be_turned_off() -> None:
    from virtmigrate.controller.config import parse_config

    assert parse_config([], {}).agent_early_start is True
    assert parse_config(["--agent-early-start=false"], {}).agent_early_start is False
    assert parse_config([], {"VIRTMIGRATE_AGENT_EARLY_START": "false"}).agent_early_start is False
