"""Convergence prediction: will pre-copy finish within the time left? Pure.

Fed by steering.py with the rates of recent iterations; tested with literals. Model: each pass sends
what the guest dirtied during the previous one, so remaining data shrinks by r = dirty/transfer per
pass; pre-copy ends when the rest fits in the allowed downtime at the transfer rate. With r >= 1 it
never ends. The prediction lets the monitor act early (post-copy, or a stronger auto-converge
throttle) instead of waiting for the completion timeout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from virtmigrate.agent.decisions import NOTHING, Action, Decision
from virtmigrate.agent.jobstats import MIB, Mode
from virtmigrate.agent.settings import Policy

MIN_ITERATION = 2        # rates are meaningless before the second pass
MAX_THROTTLE_INCREMENT = 40
THROTTLE_STEP = 10       # percentage points added to auto-converge's increment per raise
NEVER_RATIO = 0.98       # dirty/transfer at or above this: pre-copy does not converge


@dataclass(frozen=True)
class RateSample:
    """Rates observed during one poll of pre-copy iteration `iteration` (bytes/s, bytes)."""

    iteration: int
    transfer_bps: int
    dirty_bps: int
    remaining: int


@dataclass(frozen=True)
class Prediction:
    converges: bool
    eta_s: float | None  # predicted seconds to finish pre-copy; None = never
    reason: str


def predict_convergence(samples: Sequence[RateSample], *, max_downtime_ms: int,
                        time_left_s: float) -> Prediction | None:
    """Whether pre-copy finishes within `time_left_s`; None while there is too little data to tell."""
    usable = [s for s in samples if s.iteration >= MIN_ITERATION and s.transfer_bps > 0]
    if len(usable) < 2:
        return None
    transfer = sum(s.transfer_bps for s in usable) / len(usable)
    dirty = sum(s.dirty_bps for s in usable) / len(usable)
    remaining = usable[-1].remaining
    target = transfer * max_downtime_ms / 1000.0
    rates = f"dirty {dirty / MIB:.1f} MiB/s vs transfer {transfer / MIB:.1f} MiB/s"
    if remaining <= target:
        return Prediction(True, 0.0, f"remaining data fits in the allowed downtime ({rates})")
    ratio = dirty / transfer
    if ratio >= NEVER_RATIO:
        return Prediction(False, None, f"guest dirties memory as fast as it is sent ({rates})")
    passes = math.ceil(math.log(target / remaining) / math.log(ratio)) if ratio > 0 else 1
    eta = remaining / transfer * (1 - ratio ** passes) / (1 - ratio)
    if eta > time_left_s:
        return Prediction(False, eta, f"predicted {eta:.0f}s to converge in {passes} passes, "
                          f"{time_left_s:.0f}s left ({rates})")
    return Prediction(True, eta, f"predicted {eta:.0f}s to converge, {time_left_s:.0f}s left ({rates})")


def decide_convergence(prediction: Prediction | None, *, mode: Mode, policy: Policy, iteration: int,
                       throttle_increment: int, throttled_at_iteration: int) -> Decision:
    """Act early on a predicted failure to converge: post-copy if allowed, else raise the auto-converge
    throttle (at most once per pass, up to a cap), else leave it to the completion timeout."""
    if prediction is None or prediction.converges or mode != Mode.PRE_COPY:
        return NOTHING
    if policy.allow_post_copy:
        return Decision(Action.START_POST_COPY, "pre-copy will not converge in time: " + prediction.reason)
    if policy.allow_auto_converge and iteration > throttled_at_iteration:
        nxt = min(MAX_THROTTLE_INCREMENT, max(throttle_increment, 10) + THROTTLE_STEP)
        if nxt > throttle_increment:
            return Decision(Action.RAISE_THROTTLE, "pre-copy will not converge in time: " + prediction.reason,
                            value=nxt)
    return NOTHING
