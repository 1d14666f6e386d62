"""The work queue's guarantees: dedup, one worker per key, no lost adds, shutdown, delays, metrics."""

from __future__ import annotations

import random
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from tests.waiting import eventually
from virtmigrate.clock import FakeClock
from virtmigrate.workqueue import (
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    Queue,
    QueueConfig,
    RateLimitingQueue,
)


def get_within(q: Queue[str], timeout: float = 5.0) -> tuple[str | None, bool]:
    out: list[tuple[str | None, bool]] = []
    t = threading.Thread(target=lambda: out.append(q.get()), daemon=True)
    t.start()
    t.join(timeout)
    assert out, "get() did not return"
    return out[0]


def test_fifo_and_dedup() -> None:
    q: Queue[str] = Queue()
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert q.len() == 3
    got = [q.get()[0] for _ in range(3)]
    assert got == ["a", "b", "c"]


def test_key_added_while_processing_is_processed_again_after_done_only() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    item, _ = q.get()
    q.add("a")  # changed while a worker holds it
    assert q.len() == 0, "must not be handed to a second worker while processing"
    q.add("a")
    q.done(item)  # type: ignore[arg-type]
    assert q.len() == 1
    assert q.get() == ("a", False)
    q.done("a")
    assert q.len() == 0


def test_shut_down_hands_out_remaining_then_reports_shutdown() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    q.shut_down()
    q.add("b")  # refused
    assert q.get() == ("a", False)
    q.done("a")
    assert q.get() == (None, True)
    assert q.shutting_down()


def test_shut_down_unblocks_waiting_getters() -> None:
    q: Queue[str] = Queue()
    results: list[tuple[str | None, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(q.get())) for _ in range(3)]
    for t in threads:
        t.start()
    q.shut_down()
    for t in threads:
        t.join(5)
    assert results == [(None, True)] * 3


def test_shut_down_with_drain_waits_for_items_in_flight() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    item, _ = q.get()
    drained = threading.Event()

    def drain() -> None:
        q.shut_down_with_drain()
        drained.set()

    t = threading.Thread(target=drain)
    t.start()
    assert not drained.wait(0.05), "returned while an item was still being processed"
    q.done(item)  # type: ignore[arg-type]
    assert drained.wait(5)
    t.join()


def test_50_producers_10_consumers_no_concurrent_processing_and_nothing_lost() -> None:
    q: Queue[str] = Queue()
    keys = [f"ns/obj-{i}" for i in range(40)]
    version = dict.fromkeys(keys, 0)  # the "latest state" each producer publishes before adding
    vlock = threading.Lock()
    in_flight: set[str] = set()
    flock = threading.Lock()
    violations: list[str] = []
    last_seen = dict.fromkeys(keys, 0)
    processed = [0]

    def producer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            k = rng.choice(keys)
            with vlock:
                version[k] += 1
            q.add(k)

    def consumer() -> None:
        while True:
            k, shutdown = q.get()
            if shutdown:
                return
            assert k is not None
            with flock:
                if k in in_flight:
                    violations.append(k)
                in_flight.add(k)
            with vlock:
                last_seen[k] = version[k]
            processed[0] += 1
            if processed[0] % 7 == 0:
                time.sleep(0)  # let other threads interleave
            with flock:
                in_flight.discard(k)
            q.done(k)

    consumers = [threading.Thread(target=consumer) for _ in range(10)]
    producers = [threading.Thread(target=producer, args=(i,)) for i in range(50)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join(30)
    q.shut_down_with_drain()
    for t in consumers:
        t.join(30)
    assert not violations, f"keys processed concurrently: {violations[:5]}"
    assert last_seen == version, "an add after the last processing was lost"
    assert q.len() == 0 and q.processing_len() == 0


# --- delaying queue -----------------------------------------------------------------------------

def test_add_after_waits_for_the_clock() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(QueueConfig(clock=clock))
    try:
        q.add_after("a", 2.0)
        assert eventually(lambda: clock.next_deadline() == pytest.approx(clock.now() + 2.0))
        assert q.len() == 0
        clock.step(1.999)
        assert q.len() == 0
        clock.step(0.001)
        assert get_within(q) == ("a", False)
    finally:
        q.shut_down()


def test_add_after_keeps_the_earlier_ready_time() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(QueueConfig(clock=clock))
    try:
        q.add_after("a", 10.0)
        q.add_after("a", 1.0)
        q.add_after("a", 5.0)
        assert q.waiting_len() == 1
        clock.step(1.0)
        assert get_within(q) == ("a", False)
        q.done("a")
        clock.step(10.0)
        assert eventually(lambda: q.waiting_len() == 0)
        assert q.len() == 0, "the superseded later entries must not re-add the item"
    finally:
        q.shut_down()


def test_add_after_orders_by_ready_time() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(QueueConfig(clock=clock))
    try:
        q.add_after("late", 3.0)
        q.add_after("early", 1.0)
        q.add_after("now", 0)
        assert get_within(q) == ("now", False)
        clock.step(5.0)
        assert get_within(q) == ("early", False)
        assert get_within(q) == ("late", False)
    finally:
        q.shut_down()


# --- rate-limiting queue ------------------------------------------------------------------------

def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(ItemExponentialFailureRateLimiter(1.0, 60.0),
                                                  QueueConfig(clock=clock))
    try:
        q.add_rate_limited("a")  # 1 s
        assert q.num_requeues("a") == 1
        clock.step(1.0)
        assert get_within(q) == ("a", False)
        q.done("a")
        q.add_rate_limited("a")  # 2 s
        clock.step(1.5)
        assert eventually(lambda: q.waiting_len() == 1) and q.len() == 0
        clock.step(0.5)
        assert get_within(q) == ("a", False)
        q.done("a")
        q.forget("a")
        assert q.num_requeues("a") == 0
    finally:
        q.shut_down()


# --- metrics ------------------------------------------------------------------------------------

def _value(reg: CollectorRegistry, metric: str, name: str) -> float:
    v = reg.get_sample_value(metric, {"name": name})
    return 0.0 if v is None else v


def test_metrics_have_client_go_names_and_a_name_label() -> None:
    reg = CollectorRegistry()
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(ItemExponentialFailureRateLimiter(1.0, 60.0),
                                                  QueueConfig(name="migrations", clock=clock,
                                                              registry=reg))
    other: Queue[str] = Queue(QueueConfig(name="vms", clock=clock, registry=reg))  # same registry: no clash
    try:
        q.add("a")
        q.add("a")
        q.add("b")
        other.add("x")
        assert _value(reg, "workqueue_adds_total", "migrations") == 2
        assert _value(reg, "workqueue_depth", "migrations") == 2
        assert _value(reg, "workqueue_adds_total", "vms") == 1
        clock.step(3.0)
        item, _ = q.get()
        assert _value(reg, "workqueue_depth", "migrations") == 1
        assert _value(reg, "workqueue_queue_duration_seconds_sum", "migrations") == 3.0
        clock.step(4.0)
        assert _value(reg, "workqueue_longest_running_processor_seconds", "migrations") == 4.0
        assert _value(reg, "workqueue_unfinished_work_seconds", "migrations") == 4.0
        q.done(item)  # type: ignore[arg-type]
        assert _value(reg, "workqueue_work_duration_seconds_sum", "migrations") == 4.0
        assert _value(reg, "workqueue_work_duration_seconds_count", "migrations") == 1
        assert _value(reg, "workqueue_longest_running_processor_seconds", "migrations") == 0.0
        q.add_rate_limited("c")
        assert _value(reg, "workqueue_retries_total", "migrations") == 1
    finally:
        q.shut_down()


def test_queues_sharing_a_name_are_summed_and_exposed_once() -> None:
    from prometheus_client import generate_latest

    reg = CollectorRegistry()
    a: Queue[str] = Queue(QueueConfig(name="shared", registry=reg))
    b: Queue[str] = Queue(QueueConfig(name="shared", registry=reg))
    a.add("x")
    b.add("y")
    b.add("z")
    assert _value(reg, "workqueue_depth", "shared") == 3
    text = generate_latest(reg).decode()
    assert text.count('workqueue_depth{name="shared"}') == 1
