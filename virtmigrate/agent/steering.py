"""One poll's worth of steering, pure: fold an observation into the state, decide, record actions.

The monitor loop (monitor.py) calls `observe` with each JobStats sample, `decide_next` for the
decisions to act on (in order), and `apply` after acting. Nothing here reads a clock or does I/O:
`now_s` comes from the loop's injected clock. Tested with literal sample sequences.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from virtmigrate.agent import convergence
from virtmigrate.agent.convergence import RateSample
from virtmigrate.agent.decisions import (
    NOTHING,
    Action,
    Decision,
    Watermark,
    completion_limit_s,
    compute_downtime_steps,
    compute_watermark,
    decide_cancel,
    decide_completion_timeout,
    decide_no_progress,
    next_max_downtime,
)
from virtmigrate.agent.jobstats import JobStats, Mode
from virtmigrate.agent.settings import Policy
from virtmigrate.api.exitcodes import ExitCode

MAX_SAMPLES = 4


@dataclass(frozen=True)
class SteeringState:
    started_s: float
    mode: Mode = Mode.PRE_COPY
    downtime_ms: int = 0                    # the allowed downtime last set (0 = not yet)
    data_total: int = 0
    iteration: int = 0
    watermark: Watermark | None = None
    samples: tuple[RateSample, ...] = ()
    throttle_increment: int = 0             # auto-converge increment we set (0 = QEMU's default)
    throttled_at_iteration: int = 0
    abort: ExitCode | None = None           # set once we asked for an abort, and why
    cancel_seen: bool = False
    failed: frozenset[Action] = frozenset()  # actions libvirt refused: not proposed again
    actions: tuple[str, ...] = ()           # "action: reason" of every action taken


def observe(state: SteeringState, stats: JobStats, now_s: float) -> SteeringState:
    """Fold one sample of an active job into the state (watermark, recent rates, sizes)."""
    samples = state.samples
    if stats.iteration >= convergence.MIN_ITERATION and state.mode == Mode.PRE_COPY:
        samples = (*samples, RateSample(stats.iteration, stats.memory_bps, stats.dirty_rate_bps,
                                        stats.data_remaining))[-MAX_SAMPLES:]
    watermark = state.watermark
    if stats.data_total > 0:  # before the first pass is sized, "remaining" means nothing
        watermark = compute_watermark(state.watermark, stats.data_remaining, now_s)
    return dataclasses.replace(state, data_total=stats.data_total or state.data_total,
                               iteration=max(state.iteration, stats.iteration), watermark=watermark,
                               samples=samples)


def decide_next(state: SteeringState, now_s: float, policy: Policy, *, cancel: str = "") -> list[Decision]:
    """The decisions for this poll, in the order to act on them. `cancel` names a received signal."""
    if state.abort is not None:
        return []  # an abort is under way: nothing else may be started
    policy = dataclasses.replace(
        policy, allow_post_copy=policy.allow_post_copy and Action.START_POST_COPY not in state.failed,
        allow_pause=policy.allow_pause and Action.PAUSE not in state.failed,
        allow_auto_converge=policy.allow_auto_converge and Action.RAISE_THROTTLE not in state.failed)
    if cancel and not state.cancel_seen:
        d = decide_cancel(mode=state.mode, already_refused=False, signal_name=cancel)
        return [d]
    elapsed = now_s - state.started_s
    for d in (decide_no_progress(now_s, state.watermark, mode=state.mode, policy=policy),
              decide_completion_timeout(elapsed, state.data_total, mode=state.mode, policy=policy)):
        if d.action != Action.NONE:
            return [d]
    out: list[Decision] = []
    time_left = completion_limit_s(state.data_total, policy.completion_timeout_per_gib_s) - elapsed
    prediction = convergence.predict_convergence(state.samples, max_downtime_ms=policy.max_downtime_ms,
                                                 time_left_s=time_left)
    d = convergence.decide_convergence(prediction, mode=state.mode, policy=policy, iteration=state.iteration,
                                       throttle_increment=state.throttle_increment,
                                       throttled_at_iteration=state.throttled_at_iteration)
    if d.action != Action.NONE:
        out.append(d)
    if state.mode == Mode.PRE_COPY and state.data_total > 0:
        want = next_max_downtime(elapsed, compute_downtime_steps(policy, state.data_total))
        if want != state.downtime_ms:
            out.append(Decision(Action.SET_DOWNTIME, f"step at {elapsed:.1f}s", value=want))
    return out or [NOTHING]


def apply(state: SteeringState, d: Decision) -> SteeringState:
    """Record that decision `d` was acted on."""
    r = dataclasses.replace
    if d.action == Action.NONE:
        return state
    entry = f"{d.action.value}: {d.reason}" if d.action != Action.SET_DOWNTIME else \
        f"set_downtime {d.value}ms: {d.reason}"
    state = r(state, actions=(*state.actions, entry))
    if d.action == Action.SET_DOWNTIME:
        return r(state, downtime_ms=d.value)
    if d.action == Action.START_POST_COPY:
        return r(state, mode=Mode.POST_COPY)
    if d.action == Action.PAUSE:
        return r(state, mode=Mode.PAUSED)
    if d.action == Action.RAISE_THROTTLE:
        return r(state, throttle_increment=d.value, throttled_at_iteration=state.iteration)
    return r(state, abort=d.exit_code)


def note_failure(state: SteeringState, d: Decision, error: str) -> SteeringState:
    """Record that acting on `d` failed; a refused post-copy, pause or throttle is not proposed again
    (the next option of the policy applies), a refused downtime or abort is retried next poll."""
    entry = f"{d.action.value} failed: {error}"
    if d.action in (Action.SET_DOWNTIME, Action.ABORT):
        return dataclasses.replace(state, actions=(*state.actions, entry)) if d.action == Action.ABORT else state
    return dataclasses.replace(state, failed=state.failed | {d.action}, actions=(*state.actions, entry))


def note_cancel(state: SteeringState) -> SteeringState:
    """Record that the cancel request was decided on (it is acted on once)."""
    return dataclasses.replace(state, cancel_seen=True)
