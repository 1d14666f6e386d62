"""The worker threads of one controller (sample-controller's `Run`): wait for the caches, run workers
that each loop on `process_next_work_item` until the queue shuts down, drain on stop."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from virtmigrate import errors


class _Queue(Protocol):
    def shut_down(self) -> None: ...
    def shutting_down(self) -> bool: ...


class _WorkQueue(Protocol):
    """The rate-limiting queue as one work item's handling uses it (virtmigrate.workqueue)."""

    def get(self) -> tuple[str | None, bool]: ...
    def done(self, key: str) -> None: ...
    def forget(self, key: str) -> None: ...
    def add_rate_limited(self, key: str) -> None: ...
    def add_after(self, key: str, delay: float) -> None: ...
    def num_requeues(self, key: str) -> int: ...


class _Result(Protocol):
    @property
    def requeue_after(self) -> float | None: ...


OUTCOME_OK, OUTCOME_CONFLICT, OUTCOME_ERROR = "ok", "conflict", "error"


def process_next_work_item(queue: _WorkQueue, sync: Callable[[str], _Result | None], *, name: str, log: Any,
                           observe: Callable[[str, str, _Result | None], None] | None = None) -> bool:
    """Take one key from `queue`, `sync` it, and requeue as client-go's processNextWorkItem does: a
    Conflict (stale cache) or any error is retried rate-limited, success forgets the key's failures and
    honours the result's `requeue_after`. `observe(key, outcome, result)` sees every outcome (metrics).
    Returns False once the queue is shut down."""
    key, shutdown = queue.get()
    if shutdown or key is None:
        return False
    try:
        result = sync(key)
    except errors.Conflict:
        queue.add_rate_limited(key)  # our cache was stale: look again soon
        if observe is not None:
            observe(key, OUTCOME_CONFLICT, None)
    except errors.VirtMigrateError as e:
        log.warning(f"{name}_sync_failed", key=key, error=str(e), retries=queue.num_requeues(key))
        queue.add_rate_limited(key)
        if observe is not None:
            observe(key, OUTCOME_ERROR, None)
    except Exception:
        log.exception(f"{name}_sync_crashed", key=key)
        queue.add_rate_limited(key)
        if observe is not None:
            observe(key, OUTCOME_ERROR, None)
    else:
        queue.forget(key)
        if observe is not None:
            observe(key, OUTCOME_OK, result)
        if result is not None and result.requeue_after is not None:
            queue.add_after(key, max(result.requeue_after, 0.05))
    finally:
        queue.done(key)
    return True


class _Informer(Protocol):
    def wait_for_cache_sync(self, stop: threading.Event) -> bool: ...


class Workers:
    """`name`-worker-N threads calling `process_next_work_item` until it returns False."""

    def __init__(self, name: str, process_next_work_item: Callable[[], bool], queue: _Queue, *, log: Any) -> None:
        self.name = name
        self._process = process_next_work_item
        self._queue = queue
        self._log = log
        self._threads: list[threading.Thread] = []

    def _loop(self) -> None:
        while self._process():
            pass

    def start(self, n: int) -> None:
        for i in range(n):
            t = threading.Thread(target=self._loop, name=f"{self.name}-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def run(self, informers: Iterable[_Informer], n: int, stop: threading.Event) -> None:
        """Wait for the caches, run `n` workers until `stop`, then shut the queue down and join them."""
        self._log.info(f"{self.name}_controller_starting", workers=n)
        for inf in informers:
            if not inf.wait_for_cache_sync(stop):
                return  # stopped before the caches synced
        self._log.info(f"{self.name}_controller_synced")
        # What the caches hold now (a cluster's history of finished Migrations, every VM and pod) stays
        # until its objects change: the cyclic garbage collector need not walk it on every full collection
        # (it cannot be garbage in a cycle: cached objects are JSON trees, freed by reference counting).
        gc.freeze()
        self.start(n)
        stop.wait()
        self._queue.shut_down()
        for t in self._threads:
            t.join(timeout=30)
        self._log.info(f"{self.name}_controller_stopped")

    def healthy(self) -> bool:
        """Every worker alive, or the queue shutting down (workers end then by design)."""
        return all(t.is_alive() for t in self._threads) or self._queue.shutting_down()
