"""Pure decisions of the migration agent, with literals."""

from __future__ import annotations

import pytest

from virtmigrate.agent.convergence import RateSample, decide_convergence, predict_convergence
from virtmigrate.agent.decisions import (
    Action,
    Watermark,
    completion_limit_s,
    compute_downtime_steps,
    compute_watermark,
    data_gib,
    decide_cancel,
    decide_completion_timeout,
    decide_no_progress,
    failed_job_outcome,
    next_max_downtime,
)
from virtmigrate.agent.jobstats import GIB, MIB, JobStats, Mode
from virtmigrate.agent.settings import Policy
from virtmigrate.api.exitcodes import ExitCode, phase_for_exit_code


@pytest.mark.parametrize(("data", "gib"), [
    pytest.param(0, 1, id="unknown-size-counts-as-1"),
    pytest.param(256 * MIB, 1, id="quarter-rounds-up"),
    pytest.param(GIB, 1, id="exact"),
    pytest.param(GIB + 1, 2, id="one-byte-over"),
])
def test_data_gib_rounds_up(data: int, gib: int) -> None:
    assert data_gib(data) == gib


def test_completion_limit_scales_with_whole_gib() -> None:
    assert completion_limit_s(3 * GIB - 5, 150.0) == 450.0


def test_downtime_steps_start_low_and_reach_max() -> None:
    steps = compute_downtime_steps(Policy(max_downtime_ms=500, downtime_steps=5,
                                          downtime_step_delay_per_gib_s=10.0), 2 * GIB)
    assert steps == ((0.0, 100), (20.0, 200), (40.0, 300), (60.0, 400), (80.0, 500))


@pytest.mark.parametrize(("elapsed", "ms"), [
    pytest.param(0.0, 100, id="start"),
    pytest.param(19.9, 100, id="before-second-step"),
    pytest.param(20.0, 200, id="second-step"),
    pytest.param(1000.0, 500, id="never-above-max"),
])
def test_next_max_downtime(elapsed: float, ms: int) -> None:
    steps = ((0.0, 100), (20.0, 200), (40.0, 300), (60.0, 400), (80.0, 500))
    assert next_max_downtime(elapsed, steps) == ms


@pytest.mark.parametrize(("elapsed", "mode", "policy", "action", "code"), [
    pytest.param(149.0, Mode.PRE_COPY, Policy(), Action.NONE, None, id="within-limit"),
    pytest.param(151.0, Mode.PRE_COPY, Policy(allow_post_copy=True, allow_pause=True),
                 Action.START_POST_COPY, None, id="post-copy-first"),
    pytest.param(151.0, Mode.PRE_COPY, Policy(allow_pause=True), Action.PAUSE, None, id="pause-second"),
    pytest.param(151.0, Mode.PRE_COPY, Policy(), Action.ABORT, ExitCode.ABORTED_COMPLETION_TIMEOUT,
                 id="abort-last"),
    pytest.param(1000.0, Mode.POST_COPY, Policy(), Action.NONE, None, id="post-copy-is-never-aborted"),
    pytest.param(200.0, Mode.PAUSED, Policy(allow_pause=True), Action.NONE, None, id="paused-gets-time"),
    pytest.param(301.0, Mode.PAUSED, Policy(allow_pause=True), Action.ABORT,
                 ExitCode.ABORTED_COMPLETION_TIMEOUT, id="paused-too-long-aborts"),
])
def test_decide_completion_timeout(elapsed: float, mode: Mode, policy: Policy, action: Action,
                                   code: ExitCode | None) -> None:
    d = decide_completion_timeout(elapsed, 512 * MIB, mode=mode, policy=policy)
    assert (d.action, d.exit_code) == (action, code)


def test_watermark_moves_only_on_a_new_low() -> None:
    w = compute_watermark(None, 100, 1.0)
    assert w == Watermark(100, 1.0)
    assert compute_watermark(w, 100, 5.0) == w
    assert compute_watermark(w, 120, 6.0) == w
    assert compute_watermark(w, 99, 7.0) == Watermark(99, 7.0)


@pytest.mark.parametrize(("now", "mode", "action"), [
    pytest.param(159.0, Mode.PRE_COPY, Action.NONE, id="within"),
    pytest.param(161.0, Mode.PRE_COPY, Action.ABORT, id="stalled"),
    pytest.param(161.0, Mode.POST_COPY, Action.NONE, id="never-in-post-copy"),
    pytest.param(161.0, Mode.PAUSED, Action.NONE, id="not-when-paused"),
])
def test_decide_no_progress(now: float, mode: Mode, action: Action) -> None:
    d = decide_no_progress(now, Watermark(10 * MIB, 10.0), mode=mode, policy=Policy(progress_timeout_s=150.0))
    assert d.action == action
    if action == Action.ABORT:
        assert d.exit_code == ExitCode.ABORTED_NO_PROGRESS


def test_cancel_aborts_in_pre_copy_and_is_refused_in_post_copy() -> None:
    assert decide_cancel(mode=Mode.PRE_COPY, already_refused=False, signal_name="SIGTERM").exit_code \
        == ExitCode.CANCELLED
    refused = decide_cancel(mode=Mode.POST_COPY, already_refused=False, signal_name="SIGTERM")
    assert refused.action == Action.NONE and "post-copy" in refused.reason


def _samples(dirty_mib: float, xfer_mib: float, remaining_mib: float) -> list[RateSample]:
    return [RateSample(i, int(xfer_mib * MIB), int(dirty_mib * MIB), int(remaining_mib * MIB)) for i in (2, 3)]


@pytest.mark.parametrize(("samples", "time_left", "converges"), [
    pytest.param(_samples(70, 64, 256), 100.0, False, id="dirtying-faster-than-link"),
    pytest.param(_samples(64, 64, 256), 100.0, False, id="dirtying-as-fast-as-link"),
    pytest.param(_samples(8, 64, 64), 100.0, True, id="slow-dirtier-converges"),
    pytest.param(_samples(60, 64, 256), 10.0, False, id="converges-but-too-late"),
    pytest.param(_samples(0, 64, 16), 1.0, True, id="rest-fits-in-downtime"),
])
def test_predict_convergence(samples: list[RateSample], time_left: float, converges: bool) -> None:
    p = predict_convergence(samples, max_downtime_ms=300, time_left_s=time_left)
    assert p is not None and p.converges is converges


def test_no_prediction_before_the_second_pass() -> None:
    assert predict_convergence([RateSample(1, 64 * MIB, 70 * MIB, 200 * MIB)],
                               max_downtime_ms=300, time_left_s=100) is None


@pytest.mark.parametrize(("policy", "action", "value"), [
    pytest.param(Policy(allow_post_copy=True, allow_auto_converge=True), Action.START_POST_COPY, 0,
                 id="post-copy-preferred"),
    pytest.param(Policy(allow_auto_converge=True), Action.RAISE_THROTTLE, 20, id="raise-throttle"),
    pytest.param(Policy(allow_pause=True), Action.NONE, 0, id="pause-waits-for-timeout"),
])
def test_decide_convergence_acts_early(policy: Policy, action: Action, value: int) -> None:
    p = predict_convergence(_samples(70, 64, 256), max_downtime_ms=300, time_left_s=100)
    d = decide_convergence(p, mode=Mode.PRE_COPY, policy=policy, iteration=3, throttle_increment=0,
                           throttled_at_iteration=0)
    assert (d.action, d.value) == (action, value)


def test_throttle_raised_once_per_pass_up_to_cap() -> None:
    p = predict_convergence(_samples(70, 64, 256), max_downtime_ms=300, time_left_s=100)
    pol = Policy(allow_auto_converge=True)
    same_pass = decide_convergence(p, mode=Mode.PRE_COPY, policy=pol, iteration=3, throttle_increment=20,
                                   throttled_at_iteration=3)
    capped = decide_convergence(p, mode=Mode.PRE_COPY, policy=pol, iteration=9, throttle_increment=40,
                                throttled_at_iteration=8)
    assert same_pass.action == Action.NONE and capped.action == Action.NONE


def test_job_stats_from_libvirt_dict() -> None:
    s = JobStats.from_libvirt({"type": 2, "data_total": 300, "data_remaining": 100, "memory_dirty_rate": 10,
                               "memory_page_size": 4096, "memory_iteration": 3, "memory_bps": 5})
    assert s.active and s.dirty_rate_bps == 40960 and s.iteration == 3


@pytest.mark.parametrize(("code", "phase", "reason"), [
    pytest.param(0, "Succeeded", "Migrated", id="success"),
    pytest.param(23, "Failed", "Cancelled", id="cancelled"),
    pytest.param(21, "Failed", "CompletionTimeout", id="timeout"),
    pytest.param(137, "Failed", "AgentFailed", id="killed"),
])
def test_phase_for_exit_code(code: int, phase: str, reason: str) -> None:
    o = phase_for_exit_code(code)
    assert (o.phase, o.reason) == (phase, reason)


def test_a_failed_call_after_our_accepted_abort_is_that_abort_whatever_error_the_call_returns() -> None:
    # the destination noticed the stream end first: libvirt returns its error, not "operation aborted"
    code, msg = failed_job_outcome(abort=ExitCode.CANCELLED, abort_reason="abort: SIGTERM received: cancelling",
                                   aborted_error=False, name="g",
                                   error_message="qemu unexpectedly closed the monitor: load of migration failed")
    assert code == ExitCode.CANCELLED
    assert msg.startswith("migration of 'g' cancelled: abort: SIGTERM received")
    assert "load of migration failed" in msg
    code, msg = failed_job_outcome(abort=ExitCode.ABORTED_NO_PROGRESS, abort_reason="abort: no progress",
                                   aborted_error=True, error_message="operation aborted", name="g")
    assert (code, msg) == (ExitCode.ABORTED_NO_PROGRESS, "migration of 'g' aborted for lack of progress: "
                                                         "abort: no progress")


def test_a_failed_call_without_an_abort_of_ours_is_a_failed_migration() -> None:
    code, msg = failed_job_outcome(abort=None, abort_reason="", aborted_error=True,
                                   error_message="operation aborted: by someone else", name="g")
    assert code == ExitCode.MIGRATION_FAILED
    assert msg == "migration of 'g' failed: operation aborted: by someone else"
