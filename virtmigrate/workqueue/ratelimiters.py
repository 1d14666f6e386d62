"""Rate limiters: how long an item waits before its next retry (client-go's default_rate_limiters.go).

Consumed by `RateLimitingQueue.add_rate_limited`. The arithmetic lives in pure `compute_*`
functions; the classes only keep per-item state and read the injected clock.

    ItemExponentialFailureRateLimiter  per item: base * 2^failures, capped (5 ms ... 1000 s)
    BucketRateLimiter                  overall: token bucket (10 qps, burst 100)
    MaxOfRateLimiter                   the longest delay of its members
    default_controller_rate_limiter()  max-of the two above, as client-go's controllers use
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Protocol

from virtmigrate.clock import Clock, RealClock


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds to wait before `item` is processed again; counts a failure."""

    def forget(self, item: Hashable) -> None:
        """Stop tracking `item` (it succeeded); its next failure starts from the base delay."""

    def num_requeues(self, item: Hashable) -> int:
        """Failures counted for `item` since it was last forgotten."""


def compute_exponential_backoff(failures: int, *, base: float, cap: float) -> float:
    """`base * 2**failures`, capped at `cap` (and safe for huge `failures`)."""
    if failures >= 1024:  # 2**1024 overflows a float
        return cap
    return min(base * (2.0 ** failures), cap)


def compute_bucket_delay(tokens: float, elapsed: float, *, qps: float, burst: int) -> tuple[float, float]:
    """Reserve one token from a bucket that held `tokens` `elapsed` seconds ago.

    Returns `(delay, tokens_left)`; tokens may go negative, which is a reservation in the
    future (golang.org/x/time/rate's `Reserve().Delay()`).
    """
    tokens = min(float(burst), tokens + max(elapsed, 0.0) * qps) - 1.0
    delay = 0.0 if tokens >= 0 else -tokens / qps
    return delay, tokens


class ItemExponentialFailureRateLimiter:
    """Per-item exponential backoff: `base * 2^n` for the n-th failure, capped at `cap`."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self._base = base
        self._cap = cap
        self._lock = threading.Lock()
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        with self._lock:
            n = self._failures.get(item, 0)
            self._failures[item] = n + 1
        return compute_exponential_backoff(n, base=self._base, cap=self._cap)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket: `qps` tokens per second, at most `burst` saved up."""

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock | None = None) -> None:
        self._qps = qps
        self._burst = burst
        self._clock = clock or RealClock()
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        with self._lock:
            now = self._clock.now()
            delay, self._tokens = compute_bucket_delay(self._tokens, now - self._last,
                                                       qps=self._qps, burst=self._burst)
            self._last = now
            return delay

    def forget(self, item: Hashable) -> None:
        pass  # the bucket is shared by all items: nothing per item to forget

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay any member asks for; every member counts every failure."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> RateLimiter:
    """client-go's `DefaultControllerRateLimiter`: per-item 5 ms ... 1000 s, overall 10 qps burst 100."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                            BucketRateLimiter(10.0, 100, clock=clock))
