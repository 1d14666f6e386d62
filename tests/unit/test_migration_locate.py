"""Where the guest runs, from the launchers' reports, and what an agent's exit code claims (locate.py).

Every pod situation a launcher can be in, each pair of sides, each exit code: with literals, no mocks.
"""

from __future__ import annotations

import itertools

import pytest

from tests.unit.migration_literals import (
    JOB_IN,
    JOB_OUT,
    NONE_HERE,
    PAUSED_COPY,
    RUNS,
    UNREACHABLE,
    WAITS,
    exited,
    src,
)
from virtmigrate.api.domainfacts import DomainFacts, DomainState, LauncherMode
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.controller.migration.locate import Claim, Location, Where, claim_of, guest_on, leftover, locate
from virtmigrate.controller.podstate import PodView, pod_view
from virtmigrate.launcher.exitcodes import EXIT_CODES, Reason

W, L = Where, Location


def _facts(state: DomainState) -> DomainFacts:
    return DomainFacts(reachable=True, present=True, state=state, mode=LauncherMode.HOLD)


@pytest.mark.parametrize(("pod", "where"), [
    pytest.param(src(RUNS), W.RUNNING, id="runs"),
    pytest.param(src(PAUSED_COPY), W.PAUSED, id="paused-no-job"),
    pytest.param(src(WAITS), W.ABSENT, id="target-waiting-has-none"),
    pytest.param(src(NONE_HERE), W.ABSENT, id="libvirt-says-no-domain"),
    pytest.param(src(JOB_OUT), W.MIGRATING, id="outgoing-job"),
    pytest.param(src(JOB_IN), W.MIGRATING, id="incoming-job"),
    pytest.param(src(_facts(DomainState.SHUTOFF)), W.ABSENT, id="defined-but-shut-off"),
    pytest.param(src(_facts(DomainState.CRASHED)), W.ABSENT, id="crashed"),
    pytest.param(src(_facts(DomainState.OTHER)), W.UNKNOWN, id="blocked-or-pmsuspended"),
    pytest.param(src(UNREACHABLE), W.UNKNOWN, id="libvirt-unreachable"),
    pytest.param(src(None), W.UNKNOWN, id="no-report-yet"),
    # A report that says present and running from an unreachable libvirt is no fact at all.
    pytest.param(src(DomainFacts(reachable=False, present=True, state=DomainState.RUNNING)), W.UNKNOWN,
                 id="unreachable-wins-over-stale-fields"),
    # The container exited: its termination message (not its last report) says what became of the domain.
    pytest.param(src(RUNS, **exited("Migrated")), W.ABSENT, id="exited-after-the-guest-left"),
    pytest.param(src(RUNS, phase="Failed"), W.UNKNOWN, id="pod-failed-without-a-word"),
])
def test_guest_on_one_pod(pod: PodView, where: Where) -> None:
    assert guest_on(pod) == where


def test_no_pod_is_what_the_caller_says_it_means() -> None:
    assert guest_on(None) == W.UNKNOWN  # a source pod that vanished: the guest's fate is unknown
    assert guest_on(None, missing=W.ABSENT) == W.ABSENT  # a target that was never created holds nothing


# Launcher exits that prove the domain gone from the node, and those that do not (QEMU is libvirtd's child,
# not the launcher's: a launcher that lost libvirt or crashed may leave the guest running).
_GONE = {Reason.MIGRATED, Reason.STOPPED_ON_REQUEST, Reason.NOTHING_RECEIVED, Reason.START_FAILED,
         Reason.CRASHED, Reason.STOPPED, Reason.VANISHED, Reason.RECEIVE_TIMEOUT,
         Reason.LEFTOVER_REFUSED}  # a copy that never ran, which libvirt refuses to destroy: no guest there


@pytest.mark.parametrize("reason", list(Reason), ids=[r.value for r in Reason])
def test_a_terminated_launcher_by_its_termination_reason(reason: Reason) -> None:
    code = int(EXIT_CODES[reason])
    pod = src(RUNS, **exited(reason.value, code))  # its last report still said RUNNING: the exit is newer
    assert guest_on(pod) == (W.ABSENT if reason in _GONE else W.UNKNOWN)


def test_a_terminated_launcher_read_from_a_real_pod_object() -> None:
    """Through pod_view, as the controller reads its cache: the container's terminated state."""
    raw = {"metadata": {"name": "virt-launcher-testvm-aaaaa", "annotations": {
               "virtmigrate.kubevirt.io/domain": RUNS.to_annotation()}},
           "spec": {"nodeName": "node0"},
           "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {
               "exitCode": 14, "message": "LibvirtUnreachable: the node's libvirt did not come back within 60s"}}}]}}
    assert guest_on(pod_view(raw)) == W.UNKNOWN
    raw["status"]["containerStatuses"][0]["state"]["terminated"].update(  # type: ignore[index]
        exitCode=0, message="Migrated: domain ns_vm left by migration")
    assert guest_on(pod_view(raw)) == W.ABSENT


# --- locate: both sides -------------------------------------------------------------------------------

_TABLE = {
    (W.RUNNING, W.RUNNING): L.BOTH,
    (W.ABSENT, W.RUNNING): L.TARGET,
    (W.PAUSED, W.RUNNING): L.TARGET,
    (W.RUNNING, W.ABSENT): L.SOURCE,
    (W.RUNNING, W.PAUSED): L.SOURCE,
    (W.ABSENT, W.ABSENT): L.NEITHER,
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(Where, Where)),
                         ids=[f"{s}-{t}" for s, t in itertools.product(Where, Where)])
def test_locate_every_pair(source: Where, target: Where) -> None:
    """Anything not in the table — a job on either side, an unknown side, paused on both, one side paused
    and the other absent — is UNSETTLED: the decision waits (bounded) rather than guess."""
    assert locate(source, target) == _TABLE.get((source, target), L.UNSETTLED)


@pytest.mark.parametrize(("loc", "source", "target", "side"), [
    pytest.param(L.TARGET, W.PAUSED, W.RUNNING, "source", id="paused-copy-on-source"),
    pytest.param(L.SOURCE, W.RUNNING, W.PAUSED, "target", id="paused-copy-on-target"),
    pytest.param(L.TARGET, W.ABSENT, W.RUNNING, "", id="clean-success"),
    pytest.param(L.SOURCE, W.RUNNING, W.ABSENT, "", id="clean-failure"),
    pytest.param(L.BOTH, W.RUNNING, W.RUNNING, "", id="both-is-not-a-leftover"),
])
def test_leftover(loc: Location, source: Where, target: Where, side: str) -> None:
    assert leftover(loc, source, target) == side


# --- claim_of: what an exit code says ------------------------------------------------------------------

@pytest.mark.parametrize(("code", "claim"), [
    pytest.param(ExitCode.SUCCEEDED, Claim.TARGET, id="0-succeeded"),
    pytest.param(ExitCode.INVALID_ARGUMENTS, Claim.SOURCE, id="2-invalid-args"),
    pytest.param(ExitCode.SOURCE_UNREACHABLE, Claim.SOURCE, id="10-source-unreachable"),
    pytest.param(ExitCode.DESTINATION_UNREACHABLE, Claim.SOURCE, id="11-destination-unreachable"),
    pytest.param(ExitCode.MIGRATION_FAILED, Claim.SOURCE, id="20-migration-failed"),
    pytest.param(ExitCode.ABORTED_COMPLETION_TIMEOUT, Claim.SOURCE, id="21-timeout"),
    pytest.param(ExitCode.ABORTED_NO_PROGRESS, Claim.SOURCE, id="22-no-progress"),
    pytest.param(ExitCode.CANCELLED, Claim.SOURCE, id="23-cancelled"),
    # No claim: the agent did not see the guest where it left it.
    pytest.param(ExitCode.DOMAIN_NOT_FOUND, Claim.NONE, id="12-domain-not-found"),
    pytest.param(ExitCode.VERIFICATION_FAILED, Claim.NONE, id="24-verification-failed"),
    pytest.param(137, Claim.NONE, id="137-sigkill"),
    pytest.param(1, Claim.NONE, id="1-python-crash"),
    pytest.param(-1, Claim.NONE, id="unknown"),
    pytest.param(None, Claim.NONE, id="no-exit-code"),
])
def test_claim_of(code: int | None, claim: Claim) -> None:
    assert claim_of(code) == claim


def test_every_agent_exit_code_is_classified() -> None:
    """A new exit code must be placed on purpose: the SOURCE claims are exactly the Failed codes the
    exit-code table says leave the guest on the source."""
    claims = {code: claim_of(code) for code in ExitCode}
    assert {c for c, k in claims.items() if k == Claim.TARGET} == {ExitCode.SUCCEEDED}
    assert {c for c, k in claims.items() if k == Claim.NONE} == {ExitCode.DOMAIN_NOT_FOUND,
                                                                  ExitCode.VERIFICATION_FAILED}
