"""Prometheus metrics for work queues, with client-go's names and a `name` label.

Fed by `Queue` (adds, gets, dones) and `DelayingQueue` (retries); read by whoever scrapes
the registry. Queues only bump plain integers under their own lock (a prometheus_client
metric takes a lock per update, which cost more than the queue itself: see
bench/bench_workqueue.py); one collector per registry turns every live queue's numbers into
samples at scrape time. Any number of queues can report into one registry; queues that share
a name are summed.

    workqueue_depth                              gauge      items waiting
    workqueue_adds_total                         counter    adds that were not deduplicated away
    workqueue_queue_duration_seconds             histogram  time from add to get
    workqueue_work_duration_seconds              histogram  time from get to done
    workqueue_unfinished_work_seconds            gauge      summed age of items being processed
    workqueue_longest_running_processor_seconds  gauge      age of the oldest item being processed
    workqueue_retries_total                      counter    rate-limited re-adds
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Hashable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from virtmigrate.clock import Clock

# client-go: prometheus.ExponentialBuckets(10e-9, 10, 10)
BUCKETS = tuple(float(f"1e{e}") for e in range(-8, 2))


class _Histogram:
    """Bucket counts without locks: the owning queue serialises `observe`."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # last: above every bound
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, v)] += 1
        self.sum += v


class QueueMetrics:
    """One queue's numbers. Not thread-safe by itself: the queue calls it under its own lock."""

    def __init__(self, name: str, clock: Clock, registry: CollectorRegistry | None) -> None:
        self.name = name
        self._clock = clock
        self._enabled = bool(name)
        self.depth = 0
        self.adds = 0
        self.retries = 0
        self.queue_latency = _Histogram()
        self.work_duration = _Histogram()
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}
        if self._enabled:
            _collector_for(registry if registry is not None else REGISTRY).queues.add(self)

    def add(self, item: Hashable) -> None:
        if self._enabled:
            self.adds += 1
            self.depth += 1
            if item not in self._added_at:
                self._added_at[item] = self._clock.now()

    def get(self, item: Hashable) -> None:
        if self._enabled:
            now = self._clock.now()
            self.depth -= 1
            self._started_at[item] = now
            added = self._added_at.pop(item, None)
            if added is not None:
                self.queue_latency.observe(now - added)

    def done(self, item: Hashable) -> None:
        if self._enabled:
            started = self._started_at.pop(item, None)
            if started is not None:
                self.work_duration.observe(self._clock.now() - started)

    def retry(self) -> None:
        if self._enabled:
            self.retries += 1

    def unfinished_work_seconds(self) -> float:
        now = self._clock.now()
        return sum(now - t for t in list(self._started_at.values()))

    def longest_running_processor_seconds(self) -> float:
        starts = list(self._started_at.values())
        return self._clock.now() - min(starts) if starts else 0.0


class _Collector(Collector):
    """Samples of every live queue reporting into one registry."""

    def __init__(self) -> None:
        self.queues: weakref.WeakSet[QueueMetrics] = weakref.WeakSet()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # names are fixed and unique to this collector: skip the dry-run collect

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        by_name: dict[str, list[QueueMetrics]] = {}
        for q in list(self.queues):
            by_name.setdefault(q.name, []).append(q)
        depth = GaugeMetricFamily("workqueue_depth", "Current depth of workqueue", labels=["name"])
        adds = CounterMetricFamily("workqueue_adds", "Total number of adds handled by workqueue",
                                   labels=["name"])
        retries = CounterMetricFamily("workqueue_retries", "Total number of retries handled by workqueue",
                                      labels=["name"])
        unfinished = GaugeMetricFamily("workqueue_unfinished_work_seconds",
                                       "How many seconds of work has been done that is in progress and "
                                       "hasn't been observed by work_duration", labels=["name"])
        longest = GaugeMetricFamily("workqueue_longest_running_processor_seconds",
                                    "How many seconds has the longest running processor for workqueue "
                                    "been running", labels=["name"])
        latency = HistogramMetricFamily("workqueue_queue_duration_seconds",
                                        "How long in seconds an item stays in workqueue before being "
                                        "requested", labels=["name"])
        work = HistogramMetricFamily("workqueue_work_duration_seconds",
                                     "How long in seconds processing an item from workqueue takes",
                                     labels=["name"])
        for name, qs in sorted(by_name.items()):
            depth.add_metric([name], sum(q.depth for q in qs))
            adds.add_metric([name], sum(q.adds for q in qs))
            retries.add_metric([name], sum(q.retries for q in qs))
            unfinished.add_metric([name], sum(q.unfinished_work_seconds() for q in qs))
            longest.add_metric([name], max(q.longest_running_processor_seconds() for q in qs))
            for fam, hists in ((latency, [q.queue_latency for q in qs]), (work, [q.work_duration for q in qs])):
                counts = [sum(h.counts[i] for h in hists) for i in range(len(BUCKETS) + 1)]
                cumulative, buckets = 0, []
                for bound, c in zip((*BUCKETS, float("inf")), counts, strict=True):
                    cumulative += c
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                fam.add_metric([name], buckets, sum(h.sum for h in hists))
        yield from (depth, adds, latency, work, unfinished, longest, retries)


_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _Collector] = weakref.WeakKeyDictionary()


def _collector_for(registry: CollectorRegistry) -> _Collector:
    """The collector registered in `registry`, created and registered on first use (idempotent)."""
    with _lock:
        c = _collectors.get(registry)
        if c is None:
            c = _Collector()
            registry.register(c)
            _collectors[registry] = c
        return c
