"""Prometheus metrics for work queues, with client-go's names and a `name` label.

Fed by `Queue` (adds, gets, dones) and `DelayingQueue` (retries); read by whoever scrapes
the registry. Metric families are created once per registry and shared by every queue that
reports into it, so any number of queues (one per controller, many per test run) can coexist.

    workqueue_depth                              gauge      items waiting
    workqueue_adds_total                         counter    adds that were not deduplicated away
    workqueue_queue_duration_seconds             histogram  time from add to get
    workqueue_work_duration_seconds              histogram  time from get to done
    workqueue_unfinished_work_seconds            gauge      summed age of items being processed
    workqueue_longest_running_processor_seconds  gauge      age of the oldest item being processed
    workqueue_retries_total                      counter    rate-limited re-adds
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from virtmigrate.clock import Clock

# client-go: prometheus.ExponentialBuckets(10e-9, 10, 10)
_BUCKETS = tuple(1e-8 * 10**i for i in range(10))


@dataclass(frozen=True)
class _Families:
    depth: Gauge
    adds: Counter
    queue_latency: Histogram
    work_duration: Histogram
    unfinished: Gauge
    longest: Gauge
    retries: Counter


_lock = threading.Lock()
_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families_for(registry: CollectorRegistry) -> _Families:
    """The metric families registered in `registry`, created on first use (idempotent)."""
    with _lock:
        fam = _families.get(registry)
        if fam is None:
            lbl = ("name",)
            fam = _Families(
                depth=Gauge("workqueue_depth", "Current depth of workqueue", lbl, registry=registry),
                adds=Counter("workqueue_adds_total", "Total number of adds handled by workqueue", lbl,
                             registry=registry),
                queue_latency=Histogram("workqueue_queue_duration_seconds",
                                        "How long in seconds an item stays in workqueue before being "
                                        "requested", lbl, buckets=_BUCKETS, registry=registry),
                work_duration=Histogram("workqueue_work_duration_seconds",
                                        "How long in seconds processing an item from workqueue takes",
                                        lbl, buckets=_BUCKETS, registry=registry),
                unfinished=Gauge("workqueue_unfinished_work_seconds",
                                 "How many seconds of work has been done that is in progress and hasn't "
                                 "been observed by work_duration", lbl, registry=registry),
                longest=Gauge("workqueue_longest_running_processor_seconds",
                              "How many seconds has the longest running processor for workqueue been "
                              "running", lbl, registry=registry),
                retries=Counter("workqueue_retries_total", "Total number of retries handled by workqueue",
                                lbl, registry=registry),
            )
            _families[registry] = fam
        return fam


class QueueMetrics:
    """One queue's metrics. Not thread-safe by itself: the queue calls it under its own lock.

    The two in-progress gauges are computed when scraped (no updater thread), from the start
    times of the items being processed.
    """

    def __init__(self, name: str, clock: Clock, registry: CollectorRegistry | None) -> None:
        self._clock = clock
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}
        self._enabled = bool(name)
        if not self._enabled:
            return
        fam = _families_for(registry if registry is not None else REGISTRY)
        self._depth = fam.depth.labels(name=name)
        self._adds = fam.adds.labels(name=name)
        self._latency = fam.queue_latency.labels(name=name)
        self._work = fam.work_duration.labels(name=name)
        self._retries = fam.retries.labels(name=name)
        ref = weakref.ref(self)
        fam.unfinished.labels(name=name).set_function(_scrape(ref, QueueMetrics.unfinished_work_seconds))
        fam.longest.labels(name=name).set_function(
            _scrape(ref, QueueMetrics.longest_running_processor_seconds))

    def add(self, item: Hashable) -> None:
        if not self._enabled:
            return
        self._adds.inc()
        self._depth.inc()
        self._added_at.setdefault(item, self._clock.now())

    def get(self, item: Hashable) -> None:
        if not self._enabled:
            return
        now = self._clock.now()
        self._depth.dec()
        self._started_at[item] = now
        added = self._added_at.pop(item, None)
        if added is not None:
            self._latency.observe(now - added)

    def done(self, item: Hashable) -> None:
        if not self._enabled:
            return
        started = self._started_at.pop(item, None)
        if started is not None:
            self._work.observe(self._clock.now() - started)

    def retry(self) -> None:
        if self._enabled:
            self._retries.inc()

    def unfinished_work_seconds(self) -> float:
        now = self._clock.now()
        return sum(now - t for t in list(self._started_at.values()))

    def longest_running_processor_seconds(self) -> float:
        starts = list(self._started_at.values())
        return self._clock.now() - min(starts) if starts else 0.0


def _scrape(ref: weakref.ReferenceType[QueueMetrics],
            fn: Callable[[QueueMetrics], float]) -> Callable[[], float]:
    """A scrape callback that does not keep a dead queue's metrics alive."""
    def value() -> float:
        m = ref()
        return fn(m) if m is not None else 0.0
    return value
