"""The basic work queue: fair, deduplicating, and never hands one key to two workers at once.

Fed by informer event handlers (`add`), drained by controller workers (`get` ... `done`).
This is client-go's `workqueue.Typed` with its three structures:

    queue       the order in which keys will be handed out
    dirty       keys that need processing (a key is in `queue` iff it is in `dirty` and not in `processing`)
    processing  keys a worker holds between `get` and `done`

A key added while it is being processed is marked dirty and re-queued by `done`, so the
latest state is always processed, once, after the current pass.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from virtmigrate.clock import Clock, RealClock
from virtmigrate.workqueue.metrics import QueueMetrics

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class QueueConfig:
    """Optional collaborators of a queue. An empty `name` disables metrics."""

    name: str = ""
    clock: Clock = field(default_factory=RealClock)
    registry: CollectorRegistry | None = None  # None: prometheus_client.REGISTRY


class Interface(Protocol[T]):
    """What a worker needs from a queue (client-go's `TypedInterface`)."""

    def add(self, item: T) -> None: ...
    def len(self) -> int: ...
    def get(self) -> tuple[T | None, bool]: ...
    def done(self, item: T) -> None: ...
    def shut_down(self) -> None: ...
    def shut_down_with_drain(self) -> None: ...
    def shutting_down(self) -> bool: ...


class Queue(Generic[T]):
    """A thread-safe work queue. Every `get` that returns an item must be followed by `done(item)`."""

    def __init__(self, config: QueueConfig | None = None) -> None:
        cfg = config or QueueConfig()
        self._clock = cfg.clock
        self._metrics = QueueMetrics(cfg.name, cfg.clock, cfg.registry)
        self._cond = threading.Condition()
        self._queue: collections.deque[T] = collections.deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._drain = False

    def add(self, item: T) -> None:
        """Mark `item` as needing processing; a no-op if it already waits or the queue shuts down."""
        with self._cond:
            if self._shutting_down or item in self._dirty:
                return
            self._metrics.add(item)
            self._dirty.add(item)
            if item in self._processing:
                return  # `done` re-queues it: never two workers on one key
            self._queue.append(item)
            self._cond.notify()

    def len(self) -> int:
        with self._cond:
            return len(self._queue)

    def __len__(self) -> int:
        return self.len()

    def get(self) -> tuple[T | None, bool]:
        """Block until an item is ready; returns `(item, False)`, or `(None, True)` once shut down
        and empty. The caller owns `item` until it calls `done(item)`."""
        with self._cond:
            while not self._queue and not self._shutting_down:
                self._cond.wait()
            if not self._queue:
                return None, True
            item = self._queue.popleft()
            self._metrics.get(item)
            self._processing.add(item)
            self._dirty.discard(item)
            return item, False

    def done(self, item: T) -> None:
        """Release `item`; if it was added meanwhile, it goes back in the queue."""
        with self._cond:
            self._metrics.done(item)
            self._processing.discard(item)
            if item in self._dirty:
                self._queue.append(item)
                self._cond.notify()
            elif self._drain and not self._processing:
                # wakes shut_down_with_drain; only then: idle workers woken here would find nothing and wait again
                self._cond.notify_all()

    def shut_down(self) -> None:
        """Refuse new items and make `get` return `(None, True)` once the queue is empty."""
        with self._cond:
            self._drain = False
            self._shutting_down = True
            self._cond.notify_all()

    def shut_down_with_drain(self) -> None:
        """Like `shut_down`, then block until every item handed out has been `done`.
        Workers must keep calling `get`/`done` until it returns (None, True)."""
        with self._cond:
            self._drain = True
            self._shutting_down = True
            self._cond.notify_all()
            while self._processing and self._drain:
                self._cond.wait()

    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    # --- for tests and metrics ------------------------------------------------------------------

    def processing_len(self) -> int:
        with self._cond:
            return len(self._processing)

    @property
    def metrics(self) -> QueueMetrics:
        return self._metrics
