"""The worker threads of one controller (sample-controller's `Run`): wait for the caches, run workers
that each loop on `process_next_work_item` until the queue shuts down, drain on stop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class _Queue(Protocol):
    def shut_down(self) -> None: ...
    def shutting_down(self) -> bool: ...


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
        self.start(n)
        stop.wait()
        self._queue.shut_down()
        for t in self._threads:
            t.join(timeout=30)
        self._log.info(f"{self.name}_controller_stopped")

    def healthy(self) -> bool:
        """Every worker alive, or the queue shutting down (workers end then by design)."""
        return all(t.is_alive() for t in self._threads) or self._queue.shutting_down()
