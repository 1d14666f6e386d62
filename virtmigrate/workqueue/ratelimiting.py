"""A delaying queue whose re-adds are paced by a rate limiter: client-go's `RateLimitingQueue`.

Consumed by controller workers, following sample-controller's contract:
success -> `forget(key)`; transient failure -> `add_rate_limited(key)`; always `done(key)`.
"""

from __future__ import annotations

from typing import Protocol

from virtmigrate.workqueue.delaying import DelayingInterface, DelayingQueue
from virtmigrate.workqueue.queue import QueueConfig, T
from virtmigrate.workqueue.ratelimiters import RateLimiter, default_controller_rate_limiter


class RateLimitingInterface(DelayingInterface[T], Protocol[T]):
    def add_rate_limited(self, item: T) -> None: ...
    def forget(self, item: T) -> None: ...
    def num_requeues(self, item: T) -> int: ...


class RateLimitingQueue(DelayingQueue[T]):
    """A `DelayingQueue` plus a `RateLimiter`; the limiter defaults to client-go's controller default."""

    def __init__(self, rate_limiter: RateLimiter | None = None, config: QueueConfig | None = None) -> None:
        super().__init__(config)
        self._limiter = rate_limiter or default_controller_rate_limiter(self._clock)

    def add_rate_limited(self, item: T) -> None:
        """Add `item` after the delay the rate limiter decides (this counts as a failure)."""
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: T) -> None:
        """Reset `item`'s failure count. It does not remove the item from the queue."""
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)
