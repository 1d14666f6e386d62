"""Work-queue throughput: add/get/done with 10 workers.

Ours (`virtmigrate.workqueue.Queue`, dedup + one-worker-per-key, with and without metrics)
against the floor: the standard library's `queue.Queue` put/get/task_done, which does no
deduplication and no per-key exclusion. Prints items/s and the ratio to the floor.

    python bench/bench_workqueue.py [--items 200000] [--workers 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prometheus_client import CollectorRegistry

from virtmigrate.workqueue import Queue, QueueConfig, RateLimitingQueue


def _drive(workers: int, producers: int, items: int, *, get_one: Callable[[], bool], put: Callable[[int], None],
           finish: Callable[[], None]) -> tuple[float, int]:
    """Start `workers` consumers (each calls `get_one` until it returns False) and `producers` that put
    `items` keys between them; once the producers are done, `finish` ends the consumers. (seconds, processed)"""
    processed = [0] * workers

    def worker(i: int) -> None:
        n = 0
        while get_one():
            n += 1
        processed[i] = n

    def producer(p: int) -> None:
        for k in range(p, items, producers):
            put(k)

    ws = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    ps = [threading.Thread(target=producer, args=(p,)) for p in range(producers)]
    t0 = time.perf_counter()
    for t in ws + ps:
        t.start()
    for t in ps:
        t.join()
    finish()
    for t in ws:
        t.join()
    return time.perf_counter() - t0, sum(processed)


def run_ours(q: Queue[int], items: int, workers: int, producers: int) -> tuple[float, int]:
    def get_one() -> bool:
        item, shutdown = q.get()
        if shutdown:
            return False
        q.done(item)  # type: ignore[arg-type]
        return True

    return _drive(workers, producers, items, get_one=get_one, put=q.add, finish=q.shut_down_with_drain)


def run_stdlib(items: int, workers: int, producers: int) -> tuple[float, int]:
    q: queue.Queue[int | None] = queue.Queue()

    def get_one() -> bool:
        item = q.get()
        q.task_done()
        return item is not None

    def finish() -> None:
        for _ in range(workers):
            q.put(None)
        q.join()

    return _drive(workers, producers, items, get_one=get_one, put=q.put, finish=finish)


def best(fn: Callable[[], tuple[float, int]], repeats: int, items: int) -> float:
    times = []
    for _ in range(repeats):
        dt, n = fn()
        assert n == items, f"processed {n} of {items}"
        times.append(dt)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    n, w, p = a.items, a.workers, a.producers
    print(f"work queue: {n} distinct keys, {p} producers, {w} workers, median of {a.repeats}")
    floor = best(lambda: run_stdlib(n, w, p), a.repeats, n)
    ours = best(lambda: run_ours(Queue(), n, w, p), a.repeats, n)
    metr = best(lambda: run_ours(Queue(QueueConfig(name="bench", registry=CollectorRegistry())), n, w, p),
                a.repeats, n)
    rlq = best(lambda: run_ours(RateLimitingQueue(config=QueueConfig(name="bench-rl",
                                                                     registry=CollectorRegistry())), n, w, p),
               a.repeats, n)
    rows = [("queue.Queue (stdlib floor)", floor), ("workqueue.Queue", ours),
            ("workqueue.Queue + metrics", metr), ("RateLimitingQueue + metrics", rlq)]
    print(f"{'contender':32} {'seconds':>8} {'items/s':>10} {'vs floor':>9}")
    for name, dt in rows:
        print(f"{name:32} {dt:8.3f} {n / dt:10.0f} {dt / floor:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
