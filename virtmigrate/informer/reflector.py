"""The reflector: keeps a sink in step with the API server by LIST then WATCH (client-go's Reflector).

Fed by a `ListerWatcher`; feeds a `ReflectorSink` (the shared informer) from one thread:

    list:   paginated LIST (`limit`/`continue`) as a consistent read (no resourceVersion),
            handed to the sink as one `replace` (the sink turns vanished objects into tombstones)
    watch:  from the list's resourceVersion, with bookmarks and a server timeout random in
            [300, 600] s; bookmarks only advance the resourceVersion; a watch the server ends
            normally is reopened from the last resourceVersion
    410:    (Gone / too old resource version, on the watch or on a continue token) -> relist
    errors: any other failure waits `Backoff` (0.8 s -> 30 s, x2, jitter, reset after 2 min)
            and resumes the watch from the last resourceVersion (a 410 then forces the relist)
    resync: every `resync_period` seconds the sink re-delivers its cache (0 disables)
    transform: applied to every object before the sink sees it (a page's objects in a helper
            thread while the next page is fetched)

All waiting is on the injected clock; `stop()` ends the open watch from any thread.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.clock import Clock, RealClock
from virtmigrate.informer.backoff import Backoff, BackoffPolicy
from virtmigrate.informer.metrics import ReflectorMetrics
from virtmigrate.kube.listwatch import ListerWatcher, WatchStream

log = structlog.get_logger("virtmigrate.informer.reflector")

JSON = dict[str, Any]

# a watch that ends this soon with no event is treated as a failure (client-go: "very short watch")
_SHORT_WATCH = 1.0


class ReflectorSink(Protocol):
    """Where a reflector delivers what it sees; called from the reflector's thread only
    (and `resync` from its resync thread)."""

    def replace(self, objs: list[JSON], resource_version: str) -> None: ...
    def add(self, obj: JSON) -> None: ...
    def update(self, obj: JSON) -> None: ...
    def delete(self, obj: JSON) -> None: ...
    def resync(self) -> None: ...


@dataclass(frozen=True)
class ReflectorConfig:
    name: str = "reflector"
    clock: Clock = field(default_factory=RealClock)
    page_size: int = 500
    resync_period: float = 0.0
    min_watch_timeout: int = 300
    max_watch_timeout: int = 600
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    registry: CollectorRegistry | None = None  # None: prometheus_client.REGISTRY
    transform: Callable[[JSON], JSON] | None = None  # applied to every object before the sink sees it
    rand: random.Random | None = None  # test-only: a seeded source for timeouts and jitter


def should_relist(err: BaseException) -> bool:
    """Does this watch failure mean our resourceVersion is gone (410, or an ERROR event saying
    "too old resource version" with another code), so that only a fresh LIST can continue?"""
    if isinstance(err, errors.Gone):
        return True
    if isinstance(err, errors.KubeError):
        return err.status == 410 or "too old resource version" in str(err).lower()
    return False


def _apply(tf: Callable[[JSON], JSON] | None, items: list[JSON]) -> list[JSON]:
    return items if tf is None else [tf(o) for o in items]


def compute_watch_timeout(rand: float, *, low: int, high: int) -> int:
    """Server-side watch timeout in [low, high] seconds, spread so watches do not end together."""
    return int(low + rand * (high - low))


class Reflector:
    def __init__(self, lw: ListerWatcher, sink: ReflectorSink, config: ReflectorConfig | None = None) -> None:
        self._lw = lw
        self._sink = sink
        self._cfg = config or ReflectorConfig()
        self._clock = self._cfg.clock
        self._rand = self._cfg.rand or random.Random()
        self._backoff = Backoff(self._cfg.backoff, rand=self._rand)
        self.metrics = ReflectorMetrics(self._cfg.name, self._cfg.registry)
        self._log = log.bind(reflector=self._cfg.name)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._watch: WatchStream | None = None
        self._rv = ""
        self._need_list = True

    @property
    def last_sync_resource_version(self) -> str:
        return self._rv

    def stop(self) -> None:
        """Make `run` return soon: stops the open watch and any back-off wait."""
        self._stop.set()
        with self._lock:
            w = self._watch
        if w is not None:
            w.stop()

    def run(self) -> None:
        """List and watch until `stop()`. Blocks; run it in a thread."""
        resync = None
        if self._cfg.resync_period > 0:
            resync = threading.Thread(target=self._resync_loop, name=f"resync-{self._cfg.name}", daemon=True)
            resync.start()
        while not self._stop.is_set():
            try:
                if self._need_list:
                    self._list()
                self._watch_once()
                continue  # the server ended the watch normally: reopen it from the last RV
            except Exception as e:  # any failure backs off and retries: nothing is fatal
                if self._stop.is_set():
                    break
                if should_relist(e) and not self._need_list:
                    self._log.info("watch_gone_relist", rv=self._rv, error=str(e))
                    self.metrics.relists_after_gone.inc()
                    self._need_list = True
                    continue  # relist at once; a failing relist backs off below
                self._log.warning("list_watch_failed", rv=self._rv, listing=self._need_list,
                                  error=f"{type(e).__name__}: {e}")
            delay = self._backoff.next(self._clock.now())
            self._clock.wait(self._stop, delay)
        if resync is not None:
            resync.join(timeout=5)

    def _list(self) -> None:
        """Page through a consistent LIST. The transform of one page runs in a helper thread while
        the next page is on the wire, so stripping objects costs no wall time."""
        tf = self._cfg.transform
        pages: list[Future[list[JSON]]] = []
        cont: str | None = None
        rv = ""
        with ThreadPoolExecutor(1, thread_name_prefix=f"list-{self._cfg.name}") as pool:
            while True:
                if self._stop.is_set():
                    return
                try:
                    page = self._lw.list(limit=self._cfg.page_size, continue_=cont)
                except errors.Gone:
                    if cont is None:
                        raise
                    # the continue token expired mid-list: start over, still consistent
                    self._log.info("list_continue_expired", pages_so_far=len(pages))
                    pages, cont = [], None
                    continue
                pages.append(pool.submit(_apply, tf, page.get("items") or []))
                meta = page.get("metadata") or {}
                rv = meta.get("resourceVersion", "")
                cont = meta.get("continue") or None
                if cont is None:
                    break
            items = [o for f in pages for o in f.result()]
        self._sink.replace(items, rv)
        self._rv = rv
        self._need_list = False
        self.metrics.lists.inc()
        self._log.debug("listed", items=len(items), rv=rv)

    def _watch_once(self) -> None:
        timeout = compute_watch_timeout(self._rand.random(), low=self._cfg.min_watch_timeout,
                                        high=self._cfg.max_watch_timeout)
        w = self._lw.watch(resource_version=self._rv, timeout_seconds=timeout, allow_bookmarks=True)
        with self._lock:
            self._watch = w
        if self._stop.is_set():
            w.stop()
        self.metrics.watches.inc()
        started = self._clock.now()
        events = 0
        tf = self._cfg.transform
        try:
            for ev in w:
                if self._stop.is_set():
                    return
                events += 1
                self.metrics.events.inc()
                obj = ev.object
                rv = (obj.get("metadata") or {}).get("resourceVersion", "")
                t = ev.type
                if tf is not None and t != "BOOKMARK":
                    obj = tf(obj)
                if t == "ADDED":
                    self._sink.add(obj)
                elif t == "MODIFIED":
                    self._sink.update(obj)
                elif t == "DELETED":
                    self._sink.delete(obj)
                elif t != "BOOKMARK":
                    self._log.warning("watch_unknown_event", type=t)
                    continue  # not an object change: keep the RV we had
                if rv:
                    self._rv = rv
        finally:
            with self._lock:
                self._watch = None
        if not events and not self._stop.is_set() and self._clock.now() - started < _SHORT_WATCH:
            raise errors.WatchError("very short watch: ended at once without events")

    def _resync_loop(self) -> None:
        period = self._cfg.resync_period
        while not self._clock.wait(self._stop, period):
            if not self._need_list:
                self._sink.resync()
