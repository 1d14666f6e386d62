"""Back-off between a reflector's failed attempts (client-go: 800 ms ... 30 s, x2, jitter,
reset after 2 minutes without failures).

Fed by the reflector after each failed list or watch; the arithmetic is the pure
`compute_backoff`; `Backoff` only remembers the previous delay and when it was handed out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 0.8
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 1.0  # the delay is stretched by up to this fraction, then capped
    reset_after: float = 120.0  # this long without a failure starts again from `initial`


def compute_backoff(prev: float | None, since_prev: float | None, rand: float,
                    *, policy: BackoffPolicy) -> tuple[float, float]:
    """Next `(base, delay)`: `base` grows x factor from `initial` up to `cap` (or restarts after
    `reset_after` healthy seconds); `delay = min(base * (1 + jitter * rand), cap)`, rand in [0, 1)."""
    if prev is None or since_prev is None or since_prev > policy.reset_after:
        base = policy.initial
    else:
        base = min(prev * policy.factor, policy.cap)
    return base, min(base * (1.0 + policy.jitter * rand), policy.cap)


class Backoff:
    """Stateful wrapper: call `next(now)` after each failure to get the seconds to wait."""

    def __init__(self, policy: BackoffPolicy | None = None, *, rand: random.Random | None = None) -> None:
        self.policy = policy or BackoffPolicy()
        self._rand = rand or random.Random()
        self._prev: float | None = None
        self._prev_at: float | None = None

    def next(self, now: float) -> float:
        since = None if self._prev_at is None else now - self._prev_at
        self._prev, delay = compute_backoff(self._prev, since, self._rand.random(), policy=self.policy)
        self._prev_at = now
        return delay
