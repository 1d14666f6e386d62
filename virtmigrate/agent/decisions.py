"""Pure decisions of the migration monitor: no clock reads, no I/O, no logging.

Fed by steering.py (which composes them per poll from observed JobStats, the Policy and elapsed
time); tested with literals in tests/unit/test_agent_decisions.py. Each returns a value or a
`Decision(action, reason)`; the monitor loop acts on it and logs the reason.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from virtmigrate.agent.jobstats import GIB, Mode
from virtmigrate.agent.settings import Policy
from virtmigrate.api.exitcodes import ExitCode


class Action(enum.StrEnum):
    NONE = "none"                        # nothing to do (the reason may still be worth a log line)
    SET_DOWNTIME = "set_downtime"        # raise the allowed switch-over pause to `value` ms
    START_POST_COPY = "start_post_copy"  # switch the running migration to post-copy
    PAUSE = "pause"                      # pause the guest on the source so the copy completes
    RAISE_THROTTLE = "raise_throttle"    # raise auto-converge's throttle increment to `value` %
    ABORT = "abort"                      # abort the job; `exit_code` says why


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    value: int = 0
    exit_code: ExitCode | None = None


NOTHING = Decision(Action.NONE, "")


def data_gib(data_bytes: int) -> int:
    """Guest memory in whole GiB, rounded up, at least 1."""
    return max(1, math.ceil(data_bytes / GIB))


def completion_limit_s(data_bytes: int, per_gib_s: float) -> float:
    """Seconds the migration may take before the completion-timeout action."""
    return per_gib_s * data_gib(data_bytes)


def compute_downtime_steps(policy: Policy, data_bytes: int) -> tuple[tuple[float, int], ...]:
    """(at elapsed seconds, allowed downtime ms) pairs: start at max/steps, reach max after `steps` steps.

    The delay between steps scales with memory size (a larger guest needs longer per pass).
    """
    n = policy.downtime_steps
    delay = policy.downtime_step_delay_per_gib_s * data_gib(data_bytes)
    base = policy.max_downtime_ms / n
    return tuple((delay * i, max(1, round(base * (i + 1)))) for i in range(n))


def next_max_downtime(elapsed_s: float, steps: tuple[tuple[float, int], ...]) -> int:
    """The allowed downtime at `elapsed_s`: the last step whose time has come (the first before any)."""
    value = steps[0][1]
    for at, ms in steps:
        if elapsed_s >= at:
            value = ms
    return value


def should_time_out(elapsed_s: float, data_bytes: int, per_gib_s: float) -> bool:
    return elapsed_s > completion_limit_s(data_bytes, per_gib_s)


def decide_completion_timeout(elapsed_s: float, data_bytes: int, *, mode: Mode, policy: Policy) -> Decision:
    """What to do about the completion limit: post-copy if allowed, else pause if allowed, else abort.

    Post-copy cannot be aborted without losing the guest, so once in post-copy we wait. A paused
    guest gets the same time again to finish before the abort.
    """
    limit = completion_limit_s(data_bytes, policy.completion_timeout_per_gib_s)
    if elapsed_s <= limit or mode == Mode.POST_COPY:
        return NOTHING
    over = f"not complete after {elapsed_s:.1f}s (limit {limit:.0f}s for {data_gib(data_bytes)} GiB)"
    if mode == Mode.PAUSED:
        if elapsed_s > 2 * limit:
            return Decision(Action.ABORT, over + " even with the guest paused",
                            exit_code=ExitCode.ABORTED_COMPLETION_TIMEOUT)
        return NOTHING
    if policy.allow_post_copy:
        return Decision(Action.START_POST_COPY, over + "; post-copy allowed")
    if policy.allow_pause:
        return Decision(Action.PAUSE, over + "; pausing the guest (allowed, post-copy not)")
    return Decision(Action.ABORT, over + "; neither post-copy nor pause allowed",
                    exit_code=ExitCode.ABORTED_COMPLETION_TIMEOUT)


@dataclass(frozen=True)
class Watermark:
    """The lowest remaining data seen and when it was first seen (progress = a new low)."""

    lowest: int
    at_s: float


def compute_watermark(prev: Watermark | None, remaining: int, now_s: float) -> Watermark:
    if prev is None or remaining < prev.lowest:
        return Watermark(remaining, now_s)
    return prev


def should_abort_for_no_progress(now_s: float, watermark: Watermark | None, timeout_s: float) -> bool:
    return watermark is not None and now_s - watermark.at_s > timeout_s


def decide_no_progress(now_s: float, watermark: Watermark | None, *, mode: Mode, policy: Policy) -> Decision:
    """Abort when remaining data reached no new low for the progress timeout (pre-copy only:
    post-copy cannot be aborted, and a paused guest dirties nothing)."""
    if mode != Mode.PRE_COPY or not should_abort_for_no_progress(now_s, watermark, policy.progress_timeout_s):
        return NOTHING
    assert watermark is not None
    return Decision(Action.ABORT, f"no new low of remaining data ({watermark.lowest} bytes) for "
                    f"{now_s - watermark.at_s:.1f}s (progress timeout {policy.progress_timeout_s:.0f}s)",
                    exit_code=ExitCode.ABORTED_NO_PROGRESS)


def decide_cancel(*, mode: Mode, already_refused: bool, signal_name: str) -> Decision:
    """A cancel request aborts the job, except in post-copy where an abort would lose the guest."""
    if mode == Mode.POST_COPY:
        if already_refused:
            return NOTHING
        return Decision(Action.NONE, f"{signal_name} received in post-copy: the guest already runs on the "
                        "destination and cannot be moved back; letting the migration finish")
    return Decision(Action.ABORT, f"{signal_name} received: cancelling", exit_code=ExitCode.CANCELLED)


_ABORT_WORDS = {ExitCode.CANCELLED: "cancelled", ExitCode.ABORTED_NO_PROGRESS: "aborted for lack of progress",
                ExitCode.ABORTED_COMPLETION_TIMEOUT: "aborted on completion timeout"}


def failed_job_outcome(*, abort: ExitCode | None, abort_reason: str, aborted_error: bool,
                       error_message: str, name: str) -> tuple[ExitCode, str]:
    """The exit code and message of a migration call that failed, the guest still on its source.

    Once our abort was accepted, the job's end is that abort's, whatever error the call returns: the
    source's `operation aborted`, or — when the destination noticed the stream end first — the
    destination's (`qemu unexpectedly closed the monitor ... load of migration failed`). The latter
    is kept in the message. Without an abort of ours, the job failed on its own."""
    if abort is None:
        return ExitCode.MIGRATION_FAILED, f"migration of {name!r} failed: {error_message}"
    msg = f"migration of {name!r} {_ABORT_WORDS.get(abort, 'aborted')}: {abort_reason}"
    if not aborted_error:
        msg += f" (the job ended with: {error_message})"
    return abort, msg
