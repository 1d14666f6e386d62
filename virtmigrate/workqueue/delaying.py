"""A work queue that can add an item later: client-go's `DelayingQueue`.

Fed by controllers that want to look again after a delay (`add_after`) and by the
rate-limiting queue; one background thread moves due items into the queue, sleeping on the
injected clock until the earliest deadline or until an earlier item arrives.
If an item is already waiting, the earlier of the two ready times wins.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from typing import Protocol

from virtmigrate.workqueue.queue import Interface, Queue, QueueConfig, T

# client-go wakes at least this often in case the clock jumped
_MAX_WAIT = 10.0


class DelayingInterface(Interface[T], Protocol[T]):
    def add_after(self, item: T, delay: float) -> None: ...


class DelayingQueue(Queue[T]):
    """A `Queue` with `add_after`. Owns one daemon thread, which ends at `shut_down`."""

    def __init__(self, config: QueueConfig | None = None) -> None:
        super().__init__(config)
        self._wlock = threading.Lock()
        self._waiting: list[tuple[float, int, T]] = []  # heap of (ready_at, seq, item)
        self._ready_at: dict[T, float] = {}  # item -> its ready time in the heap (dedup)
        self._seq = itertools.count()
        self._wakeup = threading.Event()
        self._thread = threading.Thread(target=self._waiting_loop, name="workqueue-delay", daemon=True)
        self._thread.start()

    def add_after(self, item: T, delay: float) -> None:
        """Add `item` once `delay` seconds of the clock have passed (now if `delay <= 0`)."""
        if self.shutting_down():
            return
        self._metrics_retry()
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.now() + delay
        with self._wlock:
            current = self._ready_at.get(item)
            if current is not None and current <= ready_at:
                return  # already due earlier
            self._ready_at[item] = ready_at
            heapq.heappush(self._waiting, (ready_at, next(self._seq), item))
            self._wakeup.set()

    def _metrics_retry(self) -> None:
        with self._cond:
            self.metrics.retry()

    def shut_down(self) -> None:
        super().shut_down()
        self._wakeup.set()

    def shut_down_with_drain(self) -> None:
        self._wakeup.set()
        super().shut_down_with_drain()
        self._wakeup.set()

    def waiting_len(self) -> int:
        """Items waiting for their ready time (for tests)."""
        with self._wlock:
            return len(self._ready_at)

    def _pop_ready_locked(self, now: float) -> tuple[list[T], float | None]:
        ready: list[T] = []
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, item = heapq.heappop(self._waiting)
            if self._ready_at.get(item) == ready_at:
                del self._ready_at[item]
                ready.append(item)
            # else: a stale entry superseded by an earlier ready time
        next_at = self._waiting[0][0] if self._waiting else None
        return ready, next_at

    def _waiting_loop(self) -> None:
        while not self.shutting_down():
            now = self._clock.now()
            with self._wlock:
                ready, next_at = self._pop_ready_locked(now)
                self._wakeup.clear()
            for item in ready:
                self.add(item)
            wait = _MAX_WAIT if next_at is None else min(max(next_at - now, 0.0), _MAX_WAIT)
            if ready:
                continue  # re-check at once: adding took time
            self._clock.wait(self._wakeup, wait)
