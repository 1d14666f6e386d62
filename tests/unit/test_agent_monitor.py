"""The monitor loop against a fake `Domain` replaying recorded job-stat sequences on a FakeClock."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from virtmigrate.agent.jobstats import JOB_NONE, JOB_UNBOUNDED, MIB, JobStats, Mode
from virtmigrate.agent.monitor import Cancel, run_monitor
from virtmigrate.agent.settings import Policy
from virtmigrate.agent.steering import SteeringState
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.clock import FakeClock
from virtmigrate.errors import LibvirtError


def _s(it: int, remaining_mib: float, *, bps_mib: float = 64, dirty_mib: float = 0,
       total_mib: int = 256) -> JobStats:
    return JobStats(job_type=JOB_UNBOUNDED, data_total=total_mib * MIB, data_remaining=int(remaining_mib * MIB),
                    data_processed=int((total_mib - remaining_mib) * MIB), memory_bps=int(bps_mib * MIB),
                    dirty_rate_pps=int(dirty_mib * MIB) // 4096, page_size=4096, iteration=it)


# Recorded shapes (one sample per 0.5 s poll), modelled on TCG guests at a 64 MiB/s cap.
CONVERGING = [_s(1, 256 - 32 * i) for i in range(8)] + [_s(2, 6, dirty_mib=2), _s(3, 0.5, dirty_mib=2)]
STALLED = [_s(1, 256 - 32 * i) for i in range(6)] + [_s(2 + i // 8, 40, dirty_mib=64) for i in range(400)]
DIRTY_FASTER = [_s(1, 256 - 32 * i) for i in range(8)] + [_s(2 + i // 9, 250, dirty_mib=80) for i in range(400)]


# Recorded from real runs (bench-like hosts, TCG, 128 MiB guest, --bandwidth 64), one row per 0.5 s poll:
# (iteration, data_total KiB, data_remaining KiB, memory_bps KiB/s, memory_dirty_rate pages/s).
RECORDED_IDLE_64 = [(1, 131592, 124148, 0, 0), (1, 131592, 91428, 65567, 0), (1, 131592, 58708, 64918, 0),
                    (1, 131592, 25988, 65567, 0)]
RECORDED_REWRITE_64 = [
    (1, 131592, 111076, 65567, 0), (1, 131592, 78340, 64918, 0), (1, 131592, 45620, 65567, 0),
    (1, 131592, 12900, 64918, 0), (2, 131592, 109648, 62445, 16870), (2, 131592, 76928, 64918, 16870),
    (2, 131592, 44208, 63046, 16870), (2, 131592, 13168, 64282, 16870), (3, 131592, 108668, 65567, 15810),
    (3, 131592, 79292, 65567, 15810), (3, 131592, 43228, 64282, 15810), (3, 131592, 10508, 64918, 15810),
    (4, 131592, 107688, 63658, 16335), (4, 131592, 81512, 65567, 16335), (4, 131592, 48792, 63658, 16335)]


def _replay(rows: Sequence[tuple[int, int, int, int, int]], *, extend_to: int = 0) -> list[JobStats]:
    """Recorded rows as JobStats; `extend_to` repeats the last pass (with rising iteration numbers)."""
    rows = list(rows)
    last = [r for r in rows if r[0] == rows[-1][0]]
    while len(rows) < extend_to:
        it = rows[-1][0] + 1
        rows += [(it, *r[1:]) for r in last]
    return [JobStats(job_type=JOB_UNBOUNDED, iteration=i, data_total=t << 10, data_remaining=r << 10,
                     data_processed=(t - r) << 10, memory_bps=b << 10, dirty_rate_pps=d, page_size=4096)
            for i, t, r, b, d in rows]


class FakeDomain:
    """Replays job stats, one per poll; records what the monitor did; ends the job like libvirt would."""

    def __init__(self, stats: Sequence[JobStats], done: threading.Event, *,
                 refuse: frozenset[str] = frozenset(), post_copy_polls: int = 4) -> None:
        self.stats = list(stats)
        self.done = done
        self.refuse = refuse
        self.calls: list[tuple[str, int]] = []
        self.post_copy_polls = post_copy_polls  # polls a post-copy phase lasts before completing
        self._post_copy_left: int | None = None
        self.polls = 0
        self.post_copy_at_poll: int | None = None

    def _call(self, name: str, value: int = 0) -> None:
        if name in self.refuse:
            raise LibvirtError(f"{name}: operation not supported")
        self.calls.append((name, value))

    def job_stats(self) -> JobStats:
        self.polls += 1
        if self._post_copy_left is not None:
            self._post_copy_left -= 1
            if self._post_copy_left <= 0:
                return self._finish()
            return _s(99, 10)
        if not self.stats:
            return self._finish()
        return self.stats.pop(0)

    def _finish(self) -> JobStats:
        """The job completed: libvirt reports no job, and migrateToURI3 returns (`done`)."""
        self.done.set()
        return JobStats(job_type=JOB_NONE)

    def set_max_downtime(self, ms: int) -> None:
        self._call("set_max_downtime", ms)

    def start_post_copy(self) -> None:
        self._call("start_post_copy")
        self.post_copy_at_poll = self.polls
        self._post_copy_left = self.post_copy_polls

    def suspend(self) -> None:
        self._call("suspend")

    def abort_job(self) -> None:
        self._call("abort_job")
        self.stats = []
        self.done.set()

    def raise_throttle(self, increment_pct: int) -> None:
        self._call("raise_throttle", increment_pct)

    def names(self) -> list[str]:
        return [n for n, _ in self.calls if n != "set_max_downtime"]


def _wait_for_sleeper(clock: FakeClock, t: threading.Thread) -> bool:
    """Block (real time, bounded) until the monitor sleeps on a deadline still in the future."""
    for _ in range(4000):
        deadline = clock.next_deadline()
        if deadline is not None and deadline > clock.now():
            return True
        if not t.is_alive():
            return False
        threading.Event().wait(0.0005)
    return False


def _drive(dom: FakeDomain, policy: Policy, *, cancel_at_poll: int | None = None,
           max_polls: int = 2000) -> SteeringState:
    """Run the monitor in a thread and step the fake clock one poll at a time until it returns."""
    clock = FakeClock()
    cancel = Cancel()
    out: list[SteeringState] = []
    t = threading.Thread(target=lambda: out.append(
        run_monitor(dom, policy, clock=clock, done=dom.done, cancel=cancel)), daemon=True)
    t.start()
    for poll in range(max_polls):
        if not t.is_alive():
            break
        if poll == cancel_at_poll:
            cancel.request("SIGTERM")
        if _wait_for_sleeper(clock, t):
            clock.step(policy.poll_interval_s)
    t.join(5)
    assert not t.is_alive(), "monitor did not finish"
    return out[0]


FAST = Policy(completion_timeout_per_gib_s=60, progress_timeout_s=20, max_downtime_ms=300, downtime_steps=3,
              downtime_step_delay_per_gib_s=1.0)


def test_converging_guest_completes_without_intervention() -> None:
    dom = FakeDomain(CONVERGING, threading.Event())
    state = _drive(dom, FAST)
    assert state.abort is None and state.mode == Mode.PRE_COPY
    assert dom.names() == []
    # downtime stepped up from the first step, never above the maximum
    downtimes = [v for n, v in dom.calls if n == "set_max_downtime"]
    assert downtimes == sorted(downtimes) and downtimes[-1] <= 300 and downtimes[0] == 100


def test_recorded_idle_guest_converges_untouched() -> None:
    dom = FakeDomain(_replay(RECORDED_IDLE_64), threading.Event())
    state = _drive(dom, Policy(bandwidth_mibps=64, allow_post_copy=True))
    assert dom.names() == [] and state.abort is None and state.mode == Mode.PRE_COPY


def test_recorded_ram_rewriting_guest_switches_to_post_copy_before_the_timeout() -> None:
    dom = FakeDomain(_replay(RECORDED_REWRITE_64, extend_to=400), threading.Event())
    state = _drive(dom, Policy(bandwidth_mibps=64, allow_post_copy=True, completion_timeout_per_gib_s=150))
    assert dom.names() == ["start_post_copy"] and state.mode == Mode.POST_COPY
    assert "will not converge" in state.actions[-1]
    # acted on the prediction during the second pass (poll 6 = 3 s), not at the 150 s limit
    assert dom.post_copy_at_poll is not None and dom.post_copy_at_poll <= 8


def test_recorded_ram_rewriting_guest_is_aborted_at_the_timeout_without_post_copy() -> None:
    dom = FakeDomain(_replay(RECORDED_REWRITE_64, extend_to=400), threading.Event())
    state = _drive(dom, Policy(bandwidth_mibps=64, completion_timeout_per_gib_s=8))
    assert dom.names() == ["abort_job"] and state.abort == ExitCode.ABORTED_COMPLETION_TIMEOUT


def test_stalled_migration_is_aborted_for_no_progress() -> None:
    dom = FakeDomain(STALLED, threading.Event())
    state = _drive(dom, FAST)
    assert state.abort == ExitCode.ABORTED_NO_PROGRESS
    assert dom.names() == ["abort_job"]
    assert any(a.startswith("abort: no new low") for a in state.actions)


@pytest.mark.parametrize(("policy", "calls", "mode", "abort"), [
    pytest.param(Policy(allow_post_copy=True, progress_timeout_s=1000, completion_timeout_per_gib_s=60),
                 ["start_post_copy"], Mode.POST_COPY, None, id="post-copy-rescues-early"),
    pytest.param(Policy(allow_pause=True, progress_timeout_s=1000, completion_timeout_per_gib_s=10),
                 ["suspend"], Mode.PAUSED, None, id="pause-at-timeout"),
    pytest.param(Policy(progress_timeout_s=1000, completion_timeout_per_gib_s=10), ["abort_job"],
                 Mode.PRE_COPY, ExitCode.ABORTED_COMPLETION_TIMEOUT, id="abort-at-timeout"),
    pytest.param(Policy(allow_auto_converge=True, progress_timeout_s=1000, completion_timeout_per_gib_s=10),
                 ["raise_throttle", "raise_throttle", "abort_job"], Mode.PRE_COPY,
                 ExitCode.ABORTED_COMPLETION_TIMEOUT, id="throttle-raised-then-abort"),
])
def test_guest_dirtying_faster_than_the_link(policy: Policy, calls: list[str], mode: Mode,
                                             abort: ExitCode | None) -> None:
    dom = FakeDomain(DIRTY_FASTER, threading.Event())
    if "suspend" in calls:
        dom.stats = dom.stats[:40]  # once paused, the copy completes
    state = _drive(dom, policy)
    assert dom.names() == calls
    assert (state.mode, state.abort) == (mode, abort)


def test_post_copy_refused_falls_back_to_pause() -> None:
    dom = FakeDomain(DIRTY_FASTER[:40], threading.Event(), refuse=frozenset({"start_post_copy"}))
    state = _drive(dom, Policy(allow_post_copy=True, allow_pause=True, completion_timeout_per_gib_s=10,
                               progress_timeout_s=1000))
    assert dom.names() == ["suspend"]
    assert state.mode == Mode.PAUSED
    assert any(a.startswith("start_post_copy failed") for a in state.actions)


def test_sigterm_aborts_with_cancelled() -> None:
    dom = FakeDomain(DIRTY_FASTER, threading.Event())
    state = _drive(dom, Policy(), cancel_at_poll=5)
    assert state.abort == ExitCode.CANCELLED
    assert dom.names() == ["abort_job"]


def test_sigterm_in_post_copy_is_not_an_abort() -> None:
    dom = FakeDomain(DIRTY_FASTER, threading.Event(), post_copy_polls=40)
    state = _drive(dom, Policy(allow_post_copy=True), cancel_at_poll=20)
    assert dom.names() == ["start_post_copy"]
    assert state.abort is None and state.mode == Mode.POST_COPY


def test_cancel_before_the_job_starts_is_retried_until_the_abort_lands() -> None:
    dom = FakeDomain([JobStats(job_type=JOB_NONE)] * 3 + DIRTY_FASTER, threading.Event())
    original = dom.abort_job
    attempts: list[int] = []

    def abort_job() -> None:
        attempts.append(1)
        if dom.stats and not dom.stats[0].active:
            raise LibvirtError("abortJob: no job is active on the domain")
        original()

    dom.abort_job = abort_job  # type: ignore[method-assign]
    state = _drive(dom, Policy(), cancel_at_poll=0)
    assert state.abort == ExitCode.CANCELLED
    assert len(attempts) >= 2
