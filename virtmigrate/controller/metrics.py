"""Prometheus metrics of the migration controller.

Fed by: the migration sync (results, durations, phase times, data moved, event-to-action latency)
and, at scrape time, the Migration informer's store (the by-phase gauge is computed from the cache,
so it is right after a restart without any bookkeeping).
Consumed by: /metrics (server.py), alongside the work-queue and reflector metrics that the
machinery registers in the same registry.
"""

from __future__ import annotations

from collections import Counter as _Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from virtmigrate.api.constants import MigrationPhase

_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class _PhaseCollector(Collector):
    """`virtmigrate_migrations{phase}` from the cache at scrape time."""

    def __init__(self, list_migrations: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._list = list_migrations

    def collect(self) -> Iterator[Metric]:
        counts = _Counter(((m.get("status") or {}).get("phase") or "New") for m in self._list())
        g = GaugeMetricFamily("virtmigrate_migrations", "Migrations by phase, from the controller's cache.",
                              labels=["phase"])
        for phase in ["New", *(p.value for p in MigrationPhase)]:
            g.add_metric([phase], counts.get(phase, 0))
        yield g


class MigrationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else REGISTRY
        self.results = Counter("virtmigrate_migration_results_total", "Finished migrations by result and reason.",
                               ["result", "reason"], registry=reg)
        self.duration = Histogram("virtmigrate_migration_duration_seconds",
                                  "From creation to Succeeded or Failed.", ["result"], buckets=_DURATION_BUCKETS,
                                  registry=reg)
        self.phase_seconds = Histogram("virtmigrate_migration_phase_seconds",
                                       "Time a migration spent in a phase before leaving it.", ["phase"],
                                       buckets=_PHASE_BUCKETS, registry=reg)
        self.data_bytes = Counter("virtmigrate_migration_data_processed_bytes_total",
                                  "Guest memory bytes sent by finished migrations.", registry=reg)
        self.downtime = Histogram("virtmigrate_migration_downtime_seconds",
                                  "Guest pause at switch-over of successful migrations.",
                                  buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=reg)
        self.event_to_action = Histogram("virtmigrate_controller_event_to_action_seconds",
                                         "From the informer event that queued a key to the API write it caused.",
                                         ["controller"], buckets=_LATENCY_BUCKETS, registry=reg)
        self.guests_lost = Counter("virtmigrate_guests_lost_total",
                                   "Migrations that ended with their guest on no node (GuestLost), on both, or "
                                   "nowhere verifiable; each needs an admin.", ["reason"], registry=registry)
        self.syncs = Counter("virtmigrate_controller_syncs_total", "sync(key) calls by outcome.",
                             ["controller", "outcome"], registry=reg)
        self._collector: _PhaseCollector | None = None

    def initialize(self, results: Iterable[tuple[str, str]], *, controller: str, sync_outcomes: Iterable[str]) -> None:
        """Export every series this process can come to have at 0 before anything happens: each
        (result, reason) a Migration can end with, the duration of each result, the time of each phase a
        Migration leaves, `controller`'s syncs by each of `sync_outcomes` and its event-to-action latency.
        Prometheus's increase(), rate() and histogram_quantile() ignore a series' first sample, so a series
        that appeared with its first ending would never count it: no failing-migrations alert after the
        first failures of a reason, no duration or phase time in the dashboard after the first migration
        (Prometheus's "avoid missing metrics" rule)."""
        for result, reason in results:
            self.results.labels(result=result, reason=reason)
            self.duration.labels(result=result)
        for phase in (p.value for p in MigrationPhase if not p.terminal):
            self.phase_seconds.labels(phase=phase)
        for outcome in sync_outcomes:
            self.syncs.labels(controller=controller, outcome=outcome)
        self.event_to_action.labels(controller=controller)

    def watch_phases(self, list_migrations: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Expose `virtmigrate_migrations{phase}` computed from `list_migrations()` at scrape time."""
        if self._collector is None:
            self._collector = _PhaseCollector(list_migrations)
            self.registry.register(self._collector)

    def finished(self, result: str, reason: str, *, duration_s: float | None, data_processed: int | None,
                 downtime_ms: int | None) -> None:
        self.results.labels(result=result, reason=reason).inc()
        if duration_s is not None:
            self.duration.labels(result=result).observe(duration_s)
        if data_processed:
            self.data_bytes.inc(data_processed)
        if downtime_ms is not None and result == "Succeeded":
            self.downtime.observe(downtime_ms / 1000.0)
