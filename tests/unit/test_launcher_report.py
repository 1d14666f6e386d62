"""The launcher's domain report (launcher/report.py) and its contract (api/domainfacts.py).

`compute_facts` and `should_publish` with literals; `FactsPublisher` with a fake patch function (the
boundary: the API server) and an injected `now`. Waits for the sender thread are bounded by events, never
by sleeps; `timeout` marks stop a broken publisher from hanging the run.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import libvirt
import pytest

from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN, DomainFacts, DomainState, Job, LauncherMode
from virtmigrate.clock import FakeClock
from virtmigrate.launcher import decide
from virtmigrate.launcher.domain import Inspection
from virtmigrate.launcher.report import (
    JOB_REFRESH_S,
    PAUSED_MIGRATION,
    FactsPublisher,
    Patcher,
    compute_facts,
    should_publish,
)

UUID = "11111111-2222-3333-4444-555555555555"
HOLD, WAITING = LauncherMode.HOLD, LauncherMode.WAITING


def _seen(state: int, *, reason: int = 1, job: bool = False, persistent: bool = True) -> Inspection:
    return Inspection(state=state, reason=reason, persistent=persistent, job_active=job, uuid=UUID)


def test_paused_for_migration_is_libvirts_reason() -> None:
    assert PAUSED_MIGRATION == libvirt.VIR_DOMAIN_PAUSED_MIGRATION


@pytest.mark.parametrize(("seen", "mode", "present", "state", "job"), [
    pytest.param(None, WAITING, False, DomainState.ABSENT, Job.NONE, id="target-waits"),
    pytest.param(None, HOLD, False, DomainState.ABSENT, Job.NONE, id="gone-from-the-source"),
    pytest.param(_seen(decide.RUNNING), HOLD, True, DomainState.RUNNING, Job.NONE, id="held"),
    pytest.param(_seen(decide.RUNNING, job=True), HOLD, True, DomainState.RUNNING, Job.OUT, id="source-sending"),
    pytest.param(_seen(decide.PAUSED, job=True), WAITING, True, DomainState.PAUSED, Job.IN, id="target-receiving"),
    # An incoming domain libvirt shows paused for migration, with no job of its own on the target.
    pytest.param(_seen(decide.PAUSED, reason=PAUSED_MIGRATION), WAITING, True, DomainState.PAUSED, Job.IN,
                 id="target-incoming-paused"),
    # The same pause on a held domain is no incoming migration: a paused copy (e.g. after switch-over).
    pytest.param(_seen(decide.PAUSED, reason=PAUSED_MIGRATION), HOLD, True, DomainState.PAUSED, Job.NONE,
                 id="source-paused-leftover"),
    pytest.param(_seen(decide.RUNNING), WAITING, True, DomainState.RUNNING, Job.NONE, id="target-arrived"),
    pytest.param(_seen(decide.SHUTOFF), HOLD, True, DomainState.SHUTOFF, Job.NONE, id="shut-off"),
    pytest.param(_seen(decide.CRASHED), HOLD, True, DomainState.CRASHED, Job.NONE, id="crashed"),
    pytest.param(_seen(libvirt.VIR_DOMAIN_BLOCKED), HOLD, True, DomainState.OTHER, Job.NONE, id="blocked"),
    pytest.param(_seen(libvirt.VIR_DOMAIN_PMSUSPENDED), HOLD, True, DomainState.OTHER, Job.NONE, id="pmsuspended"),
])
def test_compute_facts(seen: Inspection | None, mode: LauncherMode, present: bool, state: DomainState,
                       job: Job) -> None:
    f = compute_facts(seen, reachable=True, mode=mode, seq=4, observed="2026-11-28T14:00:00.000Z")
    assert (f.reachable, f.present, f.state, f.job, f.mode) == (True, present, state, job, mode)
    assert (f.seq, f.observed) == (4, "2026-11-28T14:00:00.000Z")
    assert f.uuid == (UUID if present else "")
    assert f.persistent is present


def test_an_unreachable_libvirt_claims_nothing_about_the_domain() -> None:
    f = compute_facts(_seen(decide.RUNNING), reachable=False, mode=HOLD, seq=9, observed="t")
    assert f == DomainFacts(reachable=False, mode=HOLD, seq=9, observed="t")
    assert not f.running and not f.present


def test_a_transient_incoming_domain_is_reported_not_persistent() -> None:
    f = compute_facts(_seen(decide.PAUSED, job=True, persistent=False), reachable=True, mode=WAITING, seq=1,
                      observed="t")
    assert f.present and not f.persistent


# --- should_publish ---------------------------------------------------------------------------------------

RUNNING = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True, uuid=UUID,
                      mode=HOLD, seq=1, observed="t1")
SENDING = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True, uuid=UUID,
                      job=Job.OUT, mode=HOLD, seq=1, observed="t1")


def _again(f: DomainFacts, seq: int) -> DomainFacts:
    return DomainFacts(**{**f.__dict__, "seq": seq, "observed": f"t{seq}"})


@pytest.mark.parametrize(("new", "last", "since", "publish"), [
    pytest.param(RUNNING, None, 0.0, True, id="first-report"),
    pytest.param(_again(RUNNING, 2), RUNNING, 1000.0, False, id="same-observation-never-again"),
    pytest.param(SENDING, RUNNING, 0.0, True, id="a-job-started"),
    pytest.param(_again(RUNNING, 2), SENDING, 0.0, True, id="the-job-ended"),
    pytest.param(DomainFacts(reachable=False, mode=HOLD, seq=2), RUNNING, 0.0, True, id="libvirt-lost"),
    pytest.param(_again(SENDING, 2), SENDING, JOB_REFRESH_S - 0.1, False, id="job-refresh-not-yet"),
    pytest.param(_again(SENDING, 2), SENDING, JOB_REFRESH_S, True, id="job-refresh-due"),
    pytest.param(DomainFacts(**{**RUNNING.__dict__, "mode": LauncherMode.EXITING}), RUNNING, 0.0, True,
                 id="the-launcher-exits"),
])
def test_should_publish(new: DomainFacts, last: DomainFacts | None, since: float, publish: bool) -> None:
    assert should_publish(new, last, since_sent_s=since) is publish


# --- the annotation: one contract for the launcher and the controllers -------------------------------------

def test_facts_survive_the_annotation() -> None:
    for f in (RUNNING, SENDING, DomainFacts(reachable=False), DomainFacts(reachable=True, mode=WAITING, seq=3)):
        assert DomainFacts.parse(f.to_annotation()) == f


@pytest.mark.parametrize("text", [None, "", "not json", "[]", '{"present": true}', '{"reachable": true, '
                                  '"state": "exploded"}', '{"reachable": true, "seq": "x"}'])
def test_an_annotation_that_is_not_ours_reads_as_no_report(text: str | None) -> None:
    assert DomainFacts.parse(text) is None


def test_a_minimal_annotation_defaults_to_claiming_nothing() -> None:
    f = DomainFacts.parse('{"reachable": true}')
    assert f is not None and not f.present and f.state == DomainState.ABSENT and f.job == Job.NONE


def test_the_patcher_writes_only_the_domain_annotation_of_its_own_pod() -> None:
    calls: list[tuple[Any, ...]] = []

    class Client:
        def patch(self, res: Any, name: str, body: Any, namespace: str | None = None) -> None:
            calls.append((res.plural, name, body, namespace))

    Patcher(Client(), "virt-launcher-vm-aaaaa", "ns")("{}")
    assert calls == [("pods", "virt-launcher-vm-aaaaa", {"metadata": {"annotations": {ANNOTATION_DOMAIN: "{}"}}},
                      "ns")]


# --- FactsPublisher ----------------------------------------------------------------------------------------

class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **kw: object) -> None:
        self.warnings.append(event)


class FakeAPI:
    """The pod annotation's writer: records what it was sent; can hold a patch, or fail some."""

    def __init__(self, *, fail: int = 0) -> None:
        self.sent: list[DomainFacts] = []
        self.entered = threading.Event()    # a patch call has started
        self.release = threading.Event()    # patches proceed while set
        self.release.set()
        self.fail = fail                    # this many first calls raise

    def __call__(self, value: str) -> None:
        self.entered.set()
        assert self.release.wait(10), "the test never released the patch"
        if self.fail:
            self.fail -= 1
            raise ConnectionError("apiserver unavailable")
        facts = DomainFacts.parse(value)
        assert facts is not None
        self.sent.append(facts)


def _publisher(api: FakeAPI | Callable[[], Callable[[str], None]], *, now: Callable[[], float] | None = None,
               log: Log | None = None) -> FactsPublisher:
    connect = api if not isinstance(api, FakeAPI) else (lambda: api)
    return FactsPublisher(connect, now=now or FakeClock().now, log=log or Log())  # type: ignore[arg-type]


def _facts(seq: int, state: DomainState = DomainState.RUNNING) -> DomainFacts:
    return DomainFacts(reachable=True, present=True, state=state, mode=HOLD, seq=seq, observed=f"t{seq}")


@pytest.mark.timeout(20)
def test_the_latest_facts_win_over_those_never_sent() -> None:
    api = FakeAPI()
    api.release.clear()
    pub = _publisher(api)
    pub.offer(_facts(1))
    assert api.entered.wait(5)  # the first report is on its way, held by a slow API server
    pub.offer(_facts(2, DomainState.PAUSED))
    pub.offer(_facts(3, DomainState.SHUTOFF))  # supersedes seq 2 before it was sent
    api.release.set()
    assert pub.flush(10.0)
    assert [f.seq for f in api.sent] == [1, 3]
    assert api.sent[-1].state == DomainState.SHUTOFF
    pub.stop()


@pytest.mark.timeout(20)
def test_the_same_observation_is_not_sent_twice() -> None:
    api = FakeAPI()
    pub = _publisher(api)
    pub.offer(_facts(1))
    assert pub.flush(10.0)
    pub.offer(_facts(2))  # the same but for seq and time
    assert pub.flush(10.0)
    assert [f.seq for f in api.sent] == [1]
    pub.stop()


@pytest.mark.timeout(20)
def test_flush_is_bounded_when_the_api_server_hangs() -> None:
    api = FakeAPI()
    api.release.clear()
    ticks = itertools.count(step=100.0)  # every look at the time is 100 s later: the deadline passes at once
    pub = _publisher(api, now=lambda: float(next(ticks)))
    pub.offer(_facts(1))
    assert api.entered.wait(5)
    assert pub.flush(5.0) is False  # the launcher exits with its last word unsent rather than hang
    api.release.set()
    pub.stop()


@pytest.mark.timeout(20)
def test_a_failed_patch_is_retried_with_the_latest_facts() -> None:
    api, log = FakeAPI(fail=1), Log()
    pub = _publisher(api, log=log)
    pub.offer(_facts(1))
    assert api.entered.wait(5)
    pub.offer(_facts(2))  # the next observation (here the same facts) wakes the sender again
    assert pub.flush(10.0)
    assert [f.seq for f in api.sent] == [2]  # sent once, after the failure: nothing lost, nothing doubled
    assert "domain_report_failed" in log.warnings
    pub.stop()


@pytest.mark.timeout(20)
def test_no_api_access_never_blocks_the_launcher() -> None:
    def connect() -> Callable[[str], None]:
        raise PermissionError("no service account token")

    log = Log()
    pub = _publisher(connect, log=log)
    pub.offer(_facts(1))
    assert pub.flush(5.0) is False  # returns at once: the publisher stopped when it could not connect
    assert log.warnings == ["domain_report_disabled"]
