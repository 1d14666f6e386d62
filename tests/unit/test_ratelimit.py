"""Rate limiters: client-go's delays, on a fake clock."""

from __future__ import annotations

import pytest

from virtmigrate.clock import FakeClock
from virtmigrate.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)
from virtmigrate.workqueue.ratelimiters import compute_bucket_delay, compute_exponential_backoff


@pytest.mark.parametrize(("failures", "expected"), [
    pytest.param(0, 0.005, id="first-failure-5ms"),
    pytest.param(1, 0.010, id="second-10ms"),
    pytest.param(10, 5.12, id="tenth-5s"),
    pytest.param(17, 655.36, id="below-cap"),
    pytest.param(18, 1000.0, id="capped-1000s"),
    pytest.param(5000, 1000.0, id="no-overflow"),
])
def test_exponential_backoff(failures: int, expected: float) -> None:
    assert compute_exponential_backoff(failures, base=0.005, cap=1000.0) == pytest.approx(expected)


def test_item_exponential_is_per_item_and_forget_resets() -> None:
    rl = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    assert [rl.when("a") for _ in range(3)] == pytest.approx([0.005, 0.01, 0.02])
    assert rl.when("b") == pytest.approx(0.005)
    assert rl.num_requeues("a") == 3
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == pytest.approx(0.005)


@pytest.mark.parametrize(("tokens", "elapsed", "delay", "left"), [
    pytest.param(100.0, 0.0, 0.0, 99.0, id="burst-available"),
    pytest.param(0.0, 0.0, 0.1, -1.0, id="empty-waits-one-token"),
    pytest.param(-1.0, 0.0, 0.2, -2.0, id="queued-reservations"),
    pytest.param(0.0, 1.0, 0.0, 9.0, id="refills-at-qps"),
    pytest.param(50.0, 3600.0, 0.0, 99.0, id="never-above-burst"),
])
def test_bucket_delay(tokens: float, elapsed: float, delay: float, left: float) -> None:
    assert compute_bucket_delay(tokens, elapsed, qps=10.0, burst=100) == pytest.approx((delay, left))


def test_bucket_allows_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    rl = BucketRateLimiter(10.0, 100, clock=clock)
    assert all(rl.when(i) == 0.0 for i in range(100))
    assert rl.when("x") == pytest.approx(0.1)
    assert rl.when("y") == pytest.approx(0.2)
    clock.step(10.0)  # 100 tokens back, minus the 2 borrowed
    assert all(rl.when(i) == 0.0 for i in range(98))
    assert rl.when("z") == pytest.approx(0.1)


def test_max_of_takes_the_longest_and_forgets_everywhere() -> None:
    slow = ItemExponentialFailureRateLimiter(1.0, 100.0)
    rl = MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), slow)
    assert rl.when("a") == 1.0
    assert rl.when("a") == 2.0
    assert rl.num_requeues("a") == 2
    rl.forget("a")
    assert slow.num_requeues("a") == 0


def test_default_controller_rate_limiter() -> None:
    clock = FakeClock()
    rl = default_controller_rate_limiter(clock)
    # one item failing repeatedly: per-item exponential dominates
    assert [rl.when("a") for _ in range(4)] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    # a storm of distinct items: the bucket dominates after the burst of 100
    delays = [rl.when(f"k{i}") for i in range(120)]
    assert max(delays[:96]) == pytest.approx(0.005)  # 4 tokens already spent above
    assert delays[-1] == pytest.approx(2.4)  # 124 reservations, 24 past the burst, at 10 qps
