"""Typed view of libvirt's migration job statistics (`virDomain.jobStats()`), and the migration mode.

Fed by the libvirt adapter (domain.py) and by tests replaying recorded samples; consumed by the pure
decisions, the monitor loop, progress reports and the termination message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# libvirt's VIR_DOMAIN_JOB_* types (jobStats()["type"]).
JOB_NONE = 0
JOB_BOUNDED = 1
JOB_UNBOUNDED = 2
JOB_COMPLETED = 3
JOB_FAILED = 4
JOB_CANCELLED = 5

GIB = 1 << 30
MIB = 1 << 20


class Mode(enum.StrEnum):
    PRE_COPY = "pre-copy"    # memory copied while the guest runs on the source (the default)
    POST_COPY = "post-copy"  # the guest runs on the destination, pulling the rest on demand
    PAUSED = "paused"        # the guest was paused on the source so the copy can finish


@dataclass(frozen=True)
class JobStats:
    """One observation of a migration job; byte counts and rates are bytes or bytes/s."""

    job_type: int = JOB_NONE
    time_elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_bps: int = 0           # transfer rate of guest memory
    dirty_rate_pps: int = 0       # pages dirtied per second by the guest
    page_size: int = 4096
    iteration: int = 0            # pre-copy pass, 1-based (0 until known)
    downtime_ms: int = 0          # while running: the allowed maximum; when completed: the real pause
    postcopy_requests: int = 0

    @property
    def active(self) -> bool:
        """A migration job is running."""
        return self.job_type in (JOB_BOUNDED, JOB_UNBOUNDED)

    @property
    def dirty_rate_bps(self) -> int:
        return self.dirty_rate_pps * self.page_size

    @classmethod
    def from_libvirt(cls, d: Mapping[str, Any]) -> JobStats:
        """From the dict `virDomain.jobStats()` returns (missing keys read as 0)."""

        def i(key: str, default: int = 0) -> int:
            v = d.get(key, default)
            return int(v) if isinstance(v, int | float) else default

        return cls(job_type=i("type"), time_elapsed_ms=i("time_elapsed"), data_total=i("data_total"),
                   data_processed=i("data_processed"), data_remaining=i("data_remaining"),
                   memory_bps=i("memory_bps"), dirty_rate_pps=i("memory_dirty_rate"),
                   page_size=i("memory_page_size", 4096) or 4096, iteration=i("memory_iteration"),
                   downtime_ms=i("downtime"), postcopy_requests=i("memory_postcopy_requests"))
