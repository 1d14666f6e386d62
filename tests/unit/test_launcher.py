"""The launcher: pure decisions, the loop against a fake node libvirt, exit codes and domain XML."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import libvirt
import pytest

from virtmigrate.api.domainfacts import DomainFacts, DomainState, Job, LauncherMode
from virtmigrate.clock import FakeClock
from virtmigrate.errors import LibvirtError, ValidationError
from virtmigrate.launcher import decide
from virtmigrate.launcher.decide import Action, Observation
from virtmigrate.launcher.domain import Inspection
from virtmigrate.launcher.domainxml import GuestConfig, domain_xml
from virtmigrate.launcher.exitcodes import ExitCode, Reason
from virtmigrate.launcher.holder import Launcher, LauncherConfig

GUEST = GuestConfig(name="ns_vm", uuid="11111111-2222-3333-4444-555555555555", memory_bytes=64 << 20,
                    kernel="/k.elf", cmdline="mode=idle")


def test_libvirt_constants_match_the_binding() -> None:
    assert (decide.RUNNING, decide.PAUSED, decide.SHUTOFF, decide.CRASHED) == (
        libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
    assert (decide.EVENT_STOPPED, decide.EVENT_CRASHED, decide.STOPPED_MIGRATED, decide.STOPPED_FAILED) == (
        libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
    assert (decide.SHUTOFF_MIGRATED, decide.SHUTOFF_CRASHED) == (
        libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED)


def _o(**kw: object) -> Observation:
    base: dict[str, object] = {"name": "ns_vm", "present": True, "state": decide.RUNNING}
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("obs", "action", "reason"), [
    pytest.param(_o(), Action.HOLD, None, id="running"),
    pytest.param(_o(state=decide.PAUSED), Action.HOLD, None, id="paused"),
    pytest.param(_o(present=False, events=((decide.EVENT_STOPPED, decide.STOPPED_MIGRATED),)), Action.EXIT,
                 Reason.MIGRATED, id="migrated-event"),
    pytest.param(_o(present=False, migrating_out=True), Action.EXIT, Reason.MIGRATED, id="gone-while-migrating"),
    pytest.param(_o(present=False), Action.EXIT, Reason.VANISHED, id="undefined-behind-our-back"),
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_CRASHED), Action.EXIT, Reason.CRASHED,
                 id="shutoff-crashed"),
    pytest.param(_o(events=((decide.EVENT_STOPPED, decide.STOPPED_FAILED),), state=decide.SHUTOFF), Action.EXIT,
                 Reason.CRASHED, id="qemu-died"),
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_SHUTDOWN), Action.EXIT, Reason.STOPPED,
                 id="guest-powered-off"),
    pytest.param(_o(events=((decide.EVENT_STOPPED, decide.STOPPED_DESTROYED),), state=decide.SHUTOFF),
                 Action.EXIT, Reason.STOPPED, id="destroyed-by-someone"),
    pytest.param(_o(sigterm=True), Action.SHUT_DOWN, None, id="sigterm"),
    pytest.param(_o(sigterm=True, migrating_out=True), Action.HOLD, None, id="sigterm-during-migration-waits"),
])
def test_decide_hold(obs: Observation, action: Action, reason: Reason | None) -> None:
    d = decide.decide_hold(obs)
    assert d.action is action
    assert (d.outcome.reason if d.outcome else None) == reason


@pytest.mark.parametrize(("obs", "waited", "action", "reason"), [
    pytest.param(_o(present=False), 1.0, Action.WAIT, None, id="nothing-yet"),
    pytest.param(_o(state=decide.PAUSED), 1.0, Action.WAIT, None, id="arriving"),
    pytest.param(_o(), 1.0, Action.HOLD, None, id="arrived"),
    pytest.param(_o(present=False), 600.0, Action.EXIT, Reason.RECEIVE_TIMEOUT, id="timeout"),
    pytest.param(_o(present=False, sigterm=True), 1.0, Action.EXIT, Reason.NOTHING_RECEIVED, id="cancelled"),
    # Running only after the stop request: never held (holding it would shut it down), left running.
    pytest.param(_o(sigterm=True), 1.0, Action.EXIT, Reason.ARRIVED_AFTER_STOP, id="arrived-after-stop"),
])
def test_decide_receive(obs: Observation, waited: float, action: Action, reason: Reason | None) -> None:
    d = decide.decide_receive(obs, waited_s=waited, timeout_s=600)
    assert d.action is action and (d.outcome.reason if d.outcome else None) == reason


@pytest.mark.parametrize(("mode", "present", "state", "ready"), [
    pytest.param("start", True, decide.RUNNING, True, id="start-running"),
    pytest.param("start", False, 0, False, id="start-absent"),
    pytest.param("start", True, decide.PAUSED, False, id="start-paused"),
    # A receive-mode launcher is ready only once the guest has arrived and runs: that it waits is in its
    # domain report (launcher/report.py), not in its readiness.
    pytest.param("receive", False, 0, False, id="receive-waiting"),
    pytest.param("receive", True, decide.PAUSED, False, id="receive-arriving"),
    pytest.param("receive", True, decide.RUNNING, True, id="receive-arrived"),
    pytest.param("receive", True, decide.SHUTOFF, False, id="receive-failed"),
])
def test_readiness(mode: str, present: bool, state: int, ready: bool) -> None:
    assert decide.is_ready(mode, reachable=True, present=present, state=state) is ready
    assert decide.is_ready(mode, reachable=False, present=present, state=state) is False


def test_exit_codes_and_termination_message() -> None:
    from virtmigrate.launcher.exitcodes import Outcome

    assert Outcome(Reason.MIGRATED, "m").exit_code == ExitCode.OK == 0
    assert Outcome(Reason.CRASHED, "boom").exit_code == ExitCode.CRASHED
    assert Outcome(Reason.CRASHED, "boom").termination_message() == "GuestCrashed: boom"


def test_domain_xml_boots_the_kernel_on_tcg() -> None:
    root = ET.fromstring(domain_xml(GUEST))
    assert root.get("type") == "qemu"
    assert root.findtext("uuid") == GUEST.uuid and root.findtext("memory") == str(64 * 1024)
    assert root.findtext("os/kernel") == "/k.elf" and root.findtext("os/cmdline") == "mode=idle"
    assert root.find("devices/serial/source").get("path") == "/var/log/libvirt/qemu/ns_vm-serial.log"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match=r"spec\.kernel"):
        domain_xml(GuestConfig(name="x", uuid="u", memory_bytes=64 << 20))


class FakeNode:
    """A node libvirt with one domain; the test scripts what happens to it."""

    def __init__(self) -> None:
        self.domains: dict[str, tuple[int, int]] = {}
        self.pending: list[tuple[int, int]] = []
        self.migrating = False
        self.calls: list[str] = []
        self.fail_start = False
        self.on_events: list[object] = []  # callables run at each events() wait, in order
        self.lost = False  # the next events() finds the connection broken
        self.down = False  # reconnect() fails while True
        self.persistent = True  # the domain's definition (an incoming one is transient until it finishes)
        self.refuse_destroy = False  # libvirt answers, but will not destroy (a stuck state-change lock)

    def state(self, name: str) -> tuple[int, int] | None:
        return self.domains.get(name)

    def uuid(self, name: str) -> str | None:
        return GUEST.uuid if name in self.domains else None

    def migrating_out(self, name: str) -> bool:
        return self.migrating

    def inspect(self, name: str) -> Inspection | None:
        st = self.domains.get(name)
        if st is None:
            return None
        return Inspection(state=st[0], reason=st[1], persistent=self.persistent, job_active=self.migrating,
                          uuid=GUEST.uuid)

    def define_and_start(self, xml: str) -> str:
        self.calls.append("define_and_start")
        if self.fail_start:
            raise LibvirtError("no memory")
        self.domains[GUEST.name] = (decide.RUNNING, 1)
        return GUEST.uuid

    def start(self, name: str) -> None:
        self.calls.append("start")

    def shutdown(self, name: str) -> None:
        self.calls.append("shutdown")  # our test guest ignores ACPI

    def destroy(self, name: str) -> None:
        self.calls.append("destroy")
        if self.refuse_destroy:
            raise LibvirtError("Timed out during operation: cannot acquire state change lock", code=68)
        self.domains[name] = (decide.SHUTOFF, decide.SHUTOFF_DESTROYED)

    def undefine(self, name: str) -> None:
        self.calls.append("undefine")
        self.domains.pop(name, None)

    def reconnect(self) -> None:
        self.calls.append("reconnect")
        if self.down:
            raise LibvirtError("connection refused")

    def events(self, name: str, timeout: float) -> list[tuple[int, int]]:
        if self.lost:
            self.lost = False
            raise LibvirtError("client socket is closed")
        if self.on_events:
            self.on_events.pop(0)()  # type: ignore[operator]
        out, self.pending = self.pending, []
        return out


def _run(node: FakeNode, mode: str = "start", *, stop: threading.Event | None = None,
         clock: FakeClock | None = None, report: list[DomainFacts] | None = None) -> object:
    cfg = LauncherConfig(mode=mode, guest=GUEST, shutdown_timeout_s=5, receive_timeout_s=10, poll_s=0.5)
    return Launcher(node, cfg, clock=clock or FakeClock(), stop=stop or threading.Event(),
                    report=report.append if report is not None else None).run()


def test_start_then_migrated_away_exits_zero() -> None:
    node = FakeNode()

    def migrate() -> None:
        node.domains.clear()
        node.pending.append((decide.EVENT_STOPPED, decide.STOPPED_MIGRATED))

    node.on_events = [lambda: None, migrate]
    out = _run(node)
    assert out.reason is Reason.MIGRATED and out.exit_code == 0  # type: ignore[attr-defined]
    assert node.calls == ["define_and_start"]


@pytest.mark.parametrize(("obs", "left"), [
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_MIGRATED, persistent=True), True,
                 id="migrated-definition-kept"),
    pytest.param(_o(state=decide.SHUTOFF, persistent=True, events=((decide.EVENT_STOPPED, decide.STOPPED_MIGRATED),)),
                 True, id="migrated-event-then-a-daemon-restart-forgot-the-reason"),
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_MIGRATED, persistent=True, job=True), False,
                 id="libvirt-still-confirming"),
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_MIGRATED, persistent=False), False,
                 id="transient-goes-by-itself"),
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_CRASHED, persistent=True), False, id="crashed"),
    pytest.param(_o(state=decide.SHUTOFF, reason=decide.SHUTOFF_SHUTDOWN, persistent=True), False, id="powered-off"),
    pytest.param(_o(state=decide.SHUTOFF, persistent=True), False, id="stopped-for-no-reason-libvirt-gives"),
    pytest.param(_o(state=decide.PAUSED, persistent=True), False, id="paused"),
    pytest.param(_o(present=False), False, id="undefined-already"),
])
def test_only_a_definition_libvirt_says_migrated_away_is_undefined(obs: Observation, left: bool) -> None:
    assert decide.migrated_definition_left(obs) is left


def test_a_stopped_definition_the_migration_left_is_undefined_on_exit() -> None:
    """The source's libvirtd died at the switch-over and came back: the guest migrated (libvirt's shutoff
    reason says so) but the job's last step, the undefine, never ran. The launcher finishes it."""
    node = FakeNode()
    migrated = (decide.SHUTOFF, decide.SHUTOFF_MIGRATED)
    node.on_events = [lambda: None, lambda: node.domains.update({GUEST.name: migrated})]
    out = _run(node)
    assert out.reason is Reason.MIGRATED and out.exit_code == 0  # type: ignore[attr-defined]
    assert node.calls == ["define_and_start", "undefine"] and GUEST.name not in node.domains


def test_a_crashed_guest_keeps_its_definition() -> None:
    node = FakeNode()
    crashed = (decide.SHUTOFF, decide.SHUTOFF_CRASHED)
    node.on_events = [lambda: None, lambda: node.domains.update({GUEST.name: crashed})]
    out = _run(node)
    assert out.reason is Reason.CRASHED and node.calls == ["define_and_start"]  # type: ignore[attr-defined]


def test_guest_crash_exits_non_zero_with_reason() -> None:
    node = FakeNode()

    def crash() -> None:
        node.domains[GUEST.name] = (decide.SHUTOFF, decide.SHUTOFF_CRASHED)
        node.pending.append((decide.EVENT_STOPPED, decide.STOPPED_CRASHED))

    node.on_events = [crash]
    out = _run(node)
    assert out.reason is Reason.CRASHED and out.exit_code == ExitCode.CRASHED  # type: ignore[attr-defined]


def test_start_failure_is_reported() -> None:
    node = FakeNode()
    node.fail_start = True
    out = _run(node)
    assert out.reason is Reason.START_FAILED and "no memory" in out.message  # type: ignore[attr-defined]


def test_sigterm_shuts_down_then_destroys_after_the_timeout() -> None:
    node, stop, clock = FakeNode(), threading.Event(), FakeClock()
    node.on_events = [stop.set] + [lambda: clock.step(1.0)] * 20
    out = _run(node, stop=stop, clock=clock)
    assert out.reason is Reason.STOPPED_ON_REQUEST and out.exit_code == 0  # type: ignore[attr-defined]
    assert node.calls == ["define_and_start", "shutdown", "destroy", "undefine"]
    assert GUEST.name not in node.domains


def test_sigterm_during_an_outgoing_migration_waits_for_it() -> None:
    node, stop = FakeNode(), threading.Event()
    node.migrating = True

    def finish() -> None:
        node.domains.clear()
        node.pending.append((decide.EVENT_STOPPED, decide.STOPPED_MIGRATED))

    node.on_events = [stop.set, lambda: None, finish]
    out = _run(node, stop=stop)
    assert out.reason is Reason.MIGRATED  # type: ignore[attr-defined]
    assert "shutdown" not in node.calls


def test_receive_waits_for_the_domain_then_holds_it() -> None:
    node = FakeNode()

    def arrive() -> None:
        node.domains[GUEST.name] = (decide.RUNNING, 2)

    def crash() -> None:
        node.domains[GUEST.name] = (decide.CRASHED, 0)

    node.on_events = [lambda: None, arrive, lambda: None, crash]
    out = _run(node, "receive")
    assert out.reason is Reason.CRASHED  # type: ignore[attr-defined]
    assert "define_and_start" not in node.calls


def test_receive_times_out() -> None:
    node, clock = FakeNode(), FakeClock()
    node.on_events = [lambda: clock.step(4.0)] * 5
    out = _run(node, "receive", clock=clock)
    assert out.reason is Reason.RECEIVE_TIMEOUT and out.exit_code == ExitCode.RECEIVE_TIMEOUT  # type: ignore[attr-defined]


def test_a_lost_libvirt_connection_is_reopened_and_the_guest_held() -> None:
    node = FakeNode()

    def lose() -> None:
        node.lost = True

    def crash() -> None:
        node.domains[GUEST.name] = (decide.CRASHED, 0)

    node.on_events = [lose, crash]
    out = _run(node)
    assert "reconnect" in node.calls and out.reason is Reason.CRASHED  # type: ignore[attr-defined]


def test_libvirt_that_never_comes_back_ends_the_launcher() -> None:
    node, clock = FakeNode(), FakeClock()
    node.down = True

    def lose() -> None:
        node.lost = True
        threading.Thread(target=lambda: [clock.wait_for_waiters(1) and clock.step(1.0) for _ in range(80)],
                         daemon=True).start()

    node.on_events = [lose]
    out = _run(node, clock=clock)
    assert out.reason is Reason.LIBVIRT_UNREACHABLE  # type: ignore[attr-defined]
    assert out.exit_code == ExitCode.LIBVIRT_UNREACHABLE  # type: ignore[attr-defined]


# --- the pod's domain report: what the launcher tells the controllers about its node ----------------

def _said(reports: list[DomainFacts]) -> list[tuple[LauncherMode, bool, bool, DomainState, Job]]:
    """The reports without their sequence numbers and times, consecutive repeats folded."""
    out: list[tuple[LauncherMode, bool, bool, DomainState, Job]] = []
    for f in reports:
        item = (f.mode, f.reachable, f.present, f.state, f.job)
        if not out or out[-1] != item:
            out.append(item)
    return out


def test_a_receiving_launcher_reports_waiting_then_the_arrived_guest_then_its_exit() -> None:
    node = FakeNode()
    reports: list[DomainFacts] = []

    def arrive() -> None:
        node.domains[GUEST.name] = (decide.RUNNING, 2)

    def crash() -> None:
        node.domains[GUEST.name] = (decide.CRASHED, 0)

    node.on_events = [lambda: None, arrive, lambda: None, crash]
    out = _run(node, "receive", report=reports)
    assert out.reason is Reason.CRASHED  # type: ignore[attr-defined]
    W, H, X = LauncherMode.WAITING, LauncherMode.HOLD, LauncherMode.EXITING
    assert _said(reports) == [
        (W, True, False, DomainState.ABSENT, Job.NONE),     # libvirt answers, nothing arrived: the target waits
        (W, True, True, DomainState.RUNNING, Job.NONE),     # the guest arrived and runs
        (H, True, True, DomainState.RUNNING, Job.NONE),     # held
        (H, True, True, DomainState.CRASHED, Job.NONE),
        (X, True, True, DomainState.CRASHED, Job.NONE),     # the last word before the exit
    ]
    assert [f.seq for f in reports] == list(range(1, len(reports) + 1))
    assert all(f.uuid == GUEST.uuid for f in reports if f.present)


def test_the_source_reports_an_outgoing_job_then_the_guest_gone() -> None:
    node = FakeNode()
    reports: list[DomainFacts] = []

    def start_job() -> None:
        node.migrating = True

    def migrated() -> None:
        node.migrating = False
        node.domains.clear()
        node.pending.append((decide.EVENT_STOPPED, decide.STOPPED_MIGRATED))

    node.on_events = [start_job, migrated]
    out = _run(node, report=reports)
    assert out.reason is Reason.MIGRATED  # type: ignore[attr-defined]
    H, X = LauncherMode.HOLD, LauncherMode.EXITING
    assert _said(reports) == [
        (H, True, True, DomainState.RUNNING, Job.OUT),
        (H, True, False, DomainState.ABSENT, Job.NONE),
        (X, True, False, DomainState.ABSENT, Job.NONE),
    ]


def test_a_lost_libvirt_is_reported_unreachable() -> None:
    node = FakeNode()
    reports: list[DomainFacts] = []

    def lose() -> None:
        node.lost = True

    def crash() -> None:
        node.domains[GUEST.name] = (decide.CRASHED, 0)

    node.on_events = [lose, crash]
    _run(node, report=reports)
    lost = [f for f in reports if not f.reachable]
    assert len(lost) == 1 and not lost[0].present  # libvirt did not answer: nothing is claimed about the guest
    after = reports[reports.index(lost[0]) + 1:]
    assert after and all(f.reachable for f in after) and after[-1].mode == LauncherMode.EXITING


def test_a_stop_on_request_reports_the_domain_gone() -> None:
    node, stop, clock = FakeNode(), threading.Event(), FakeClock()
    reports: list[DomainFacts] = []
    node.on_events = [stop.set] + [lambda: clock.step(1.0)] * 20
    out = _run(node, stop=stop, clock=clock, report=reports)
    assert out.reason is Reason.STOPPED_ON_REQUEST  # type: ignore[attr-defined]
    last = reports[-1]
    assert (last.mode, last.reachable, last.present) == (LauncherMode.EXITING, True, False)


@pytest.mark.parametrize(("present", "state", "persistent", "job", "want", "reason"), [
    (False, 0, False, False, decide.Leftover.NONE, 0),
    (True, decide.PAUSED, False, False, decide.Leftover.DESTROY, 0),   # an incoming migration that never finished
    (True, decide.PAUSED, False, True, decide.Leftover.WAIT, 0),       # its job still runs: its end decides
    (True, decide.PAUSED, True, False, decide.Leftover.NONE, 0),       # persistent: libvirt's rule keeps it
    (True, decide.RUNNING, False, False, decide.Leftover.NONE, 0),     # a running guest is never touched
    (True, decide.PAUSED, False, False, decide.Leftover.NONE, 13),   # post-copy failed: perhaps the only copy
    (True, decide.PAUSED, False, False, decide.Leftover.DESTROY, decide.PAUSED_STARTING_UP),  # it never ran
])
def test_what_a_receive_launcher_asked_to_stop_may_remove(present: bool, state: int, persistent: bool, job: bool,
                                                           want: decide.Leftover, reason: int) -> None:
    o = decide.Observation(name="ns_vm", present=present, state=state, sigterm=True, persistent=persistent, job=job,
                           reason=reason)
    assert decide.receive_leftover(o) is want


@pytest.mark.parametrize(("reason", "stopping_for_s", "want"), [
    (decide.PAUSED_MIGRATION, 1.0, decide.Leftover.WAIT),                         # the job may still end
    (decide.PAUSED_MIGRATION, decide.LEFTOVER_JOB_WAIT_S, decide.Leftover.DESTROY),  # pre-copy: the source has it
    (12, 60.0, decide.Leftover.WAIT),             # VIR_DOMAIN_PAUSED_POSTCOPY: perhaps the only copy, never touched
    (13, 60.0, decide.Leftover.WAIT),             # VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: the same
])
def test_a_job_a_restarted_daemon_kept_on_a_paused_incoming_copy_is_not_waited_for_for_ever(
        reason: int, stopping_for_s: float, want: decide.Leftover) -> None:
    """Chaos seed 11 round 22: the target's libvirtd restarted mid-incoming migration and kept the paused copy
    with a job that never ends; its launcher, asked to stop, waited until its pod's grace ran out and was
    killed, leaving the copy behind."""
    o = decide.Observation(name="ns_vm", present=True, state=decide.PAUSED, reason=reason, sigterm=True, job=True)
    assert decide.receive_leftover(o, stopping_for_s=stopping_for_s) is want


def test_receive_survives_a_libvirtd_restart_and_removes_the_incoming_leftover_on_stop() -> None:
    """The target's libvirtd died mid-migration; the restarted daemon kept the paused, transient incoming
    domain. The receive launcher reconnects instead of exiting, and when the Migration's cleanup stops it,
    it destroys that leftover (libvirt's rule), so the node is clean for the next migration."""
    node, stop = FakeNode(), threading.Event()
    node.persistent = False

    def lose() -> None:
        node.lost = True

    def kept_by_the_restarted_daemon() -> None:
        node.domains[GUEST.name] = (decide.PAUSED, 0)

    node.on_events = [lose, kept_by_the_restarted_daemon, stop.set, lambda: None]
    out = _run(node, "receive", stop=stop)
    assert out.reason is Reason.NOTHING_RECEIVED  # type: ignore[attr-defined]
    assert "reconnect" in node.calls and "destroy" in node.calls
    assert "define_and_start" not in node.calls


def test_a_receive_launcher_never_destroys_a_persistent_paused_domain() -> None:
    node, stop = FakeNode(), threading.Event()
    node.domains[GUEST.name] = (decide.PAUSED, 0)
    node.on_events = [stop.set, lambda: None]
    out = _run(node, "receive", stop=stop)
    assert out.reason is Reason.NOTHING_RECEIVED  # type: ignore[attr-defined]
    assert "destroy" not in node.calls


def test_a_refused_leftover_says_the_guest_does_not_run_here_and_how_to_clear_the_record() -> None:
    out = decide.leftover_refused("ns_vm", decide.PAUSED_STARTING_UP, "cannot acquire state change lock")
    assert out.reason is Reason.LEFTOVER_REFUSED and out.exit_code == 16
    assert "never ran" in out.message and "cannot acquire state change lock" in out.message
    assert "/run/libvirt/qemu/ns_vm.xml" in out.message  # the admin's fix


def test_a_leftover_libvirt_refuses_to_destroy_ends_the_launcher_with_that_reason_not_a_reconnect_loop() -> None:
    """libvirt 9.0, its daemon killed while it started an incoming domain's QEMU: the restarted daemon keeps
    a record of it (paused, starting up) that it will not destroy. Asked to stop, the receive launcher tries
    once, and ends saying so (a lost daemon would instead be reconnected to)."""
    node, stop = FakeNode(), threading.Event()
    node.persistent, node.refuse_destroy = False, True
    node.domains[GUEST.name] = (decide.PAUSED, decide.PAUSED_STARTING_UP)
    node.on_events = [stop.set, lambda: None]
    out = _run(node, "receive", stop=stop)
    assert out.reason is Reason.LEFTOVER_REFUSED  # type: ignore[attr-defined]
    assert node.calls.count("destroy") == 1 and "reconnect" not in node.calls
    assert node.domains[GUEST.name] == (decide.PAUSED, decide.PAUSED_STARTING_UP)  # reported, not hidden
