"""Work queues and rate limiters in the style of client-go's util/workqueue.

Fed by informer event handlers (keys `namespace/name`), drained by controller workers.
Knows nothing of informers (import-linter enforces it).
"""

from virtmigrate.workqueue.delaying import DelayingInterface, DelayingQueue
from virtmigrate.workqueue.queue import Interface, Queue, QueueConfig
from virtmigrate.workqueue.ratelimiters import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from virtmigrate.workqueue.ratelimiting import RateLimitingInterface, RateLimitingQueue

__all__ = [
    "BucketRateLimiter",
    "DelayingInterface",
    "DelayingQueue",
    "Interface",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "Queue",
    "QueueConfig",
    "RateLimiter",
    "RateLimitingInterface",
    "RateLimitingQueue",
    "default_controller_rate_limiter",
]
