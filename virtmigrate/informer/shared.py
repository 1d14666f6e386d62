"""The shared informer: one reflector and one cache per collection, shared by many handlers.

Fed by a `Reflector` (it is the reflector's sink); consumed by controllers, which read its
`indexer` (a `Store`) and register `ResourceEventHandler`s. Each handler has its own
unbounded buffer and thread (client-go's processorListener), so a slow handler delays only
itself — unless it is registered `inline`: then the reflector's thread calls it, under the informer's
lock, as each change is cached. An inline handler must only read caches and queue keys (no API call, no
wait on anything a worker holds across one), and it spares the hand-off to a thread of its own, which
wakes that thread for every event (the hand-off held the GIL in 15% of the samples of a py-spy profile of
`bench/bench_controller.py scale` at n=1000). Either way every handler sees every change in order:

    first list          on_add(obj, is_in_initial_list=True)
    watch ADDED         on_add(obj, False)   (on_update if the key was cached)
    watch MODIFIED      on_update(old, new)
    watch DELETED       on_delete(obj)
    relist              on_update for kept keys, on_add for new ones, and
                        on_delete(DeletedFinalStateUnknown(key, last known state)) for vanished ones
    resync              on_update(obj, obj) for every cached object
    handler added late  on_add(obj, True) for every cached object, then live events

The optional `transform` runs on every object before it is cached (default: drop
`metadata.managedFields`, which no controller reads and which is most of an object's bytes).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from virtmigrate.clock import Clock, RealClock
from virtmigrate.informer.handlers import DeletedFinalStateUnknown, ResourceEventHandler
from virtmigrate.informer.reflector import Reflector, ReflectorConfig
from virtmigrate.informer.store import IndexFunc, Store
from virtmigrate.kube.listwatch import ListerWatcher

log = structlog.get_logger("virtmigrate.informer")

JSON = dict[str, Any]
TransformFunc = Callable[[JSON], JSON]


def strip_managed_fields(obj: JSON) -> JSON:
    """The default transform: drop `metadata.managedFields` in place (the object is fresh from JSON)."""
    meta = obj.get("metadata")
    if meta is not None:
        meta.pop("managedFields", None)
    return obj


@dataclass(frozen=True)
class InformerConfig:
    name: str = "informer"  # metrics label and log field
    clock: Clock = field(default_factory=RealClock)
    indexers: Mapping[str, IndexFunc] | None = None  # None: by namespace
    transform: TransformFunc | None = strip_managed_fields
    resync_period: float = 0.0
    page_size: int = 500
    registry: CollectorRegistry | None = None
    reflector: ReflectorConfig | None = None  # test-only: overrides the reflector's settings


# notification kinds in a listener's buffer
_ADD, _UPDATE, _DELETE, _SYNCED = 0, 1, 2, 3
Notification = tuple[int, Any, Any]


class HandlerRegistration:
    """Returned by `add_event_handler`; `has_synced()` once the handler has received the initial list."""

    def __init__(self, handler: ResourceEventHandler, name: str, *, inline: bool = False) -> None:
        self.handler = handler
        self.inline = inline
        self._synced = threading.Event()
        self._cond = threading.Condition()
        self._buf: collections.deque[Notification] = collections.deque()
        self._stopped = False
        self._thread = None if inline else threading.Thread(target=self._run, name=f"handler-{name}", daemon=True)
        self._log = log.bind(informer=name)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def _start(self) -> None:
        if self._thread is not None:
            self._thread.start()

    # The one consumer thread waits only on an empty buffer, so only the push that makes the buffer
    # non-empty needs to wake it: later ones join the batch it is about to take (fewer thread wake-ups).
    # An inline registration has no buffer: the pusher (the reflector's thread, under the informer's lock)
    # delivers at once.

    def _push_many(self, notes: list[Notification]) -> None:
        if self.inline:
            if not self._stopped:
                for note in notes:
                    self._deliver(note)
            return
        with self._cond:
            was_empty = not self._buf
            self._buf.extend(notes)
            if was_empty:
                self._cond.notify()

    def _push(self, note: Notification) -> None:
        if self.inline:
            if not self._stopped:
                self._deliver(note)
            return
        with self._cond:
            was_empty = not self._buf
            self._buf.append(note)
            if was_empty:
                self._cond.notify()

    def _stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._buf)

    def _deliver(self, note: Notification) -> None:
        kind, a, b = note
        h = self.handler
        try:
            if kind == _ADD:
                h.on_add(a, b)
            elif kind == _UPDATE:
                h.on_update(a, b)
            elif kind == _DELETE:
                h.on_delete(a)
            else:
                self._synced.set()
        except Exception:  # a handler bug must not stop later events reaching it
            self._log.exception("handler_failed", kind=kind)

    def _run(self) -> None:
        deliver = self._deliver
        while True:
            with self._cond:
                while not self._buf and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                batch = list(self._buf)
                self._buf.clear()
            for note in batch:
                deliver(note)


class SharedInformer:
    """A cache of one collection plus event fan-out. `run(stop)` blocks until `stop` is set."""

    def __init__(self, lw: ListerWatcher, config: InformerConfig | None = None) -> None:
        self._cfg = cfg = config or InformerConfig()
        self.name = cfg.name
        self._clock = cfg.clock
        self.indexer = Store(cfg.indexers)
        self._lock = threading.Lock()  # orders cache changes with their notifications
        self._handlers: list[HandlerRegistration] = []
        self._synced = threading.Event()
        self._started = False
        rcfg = cfg.reflector or ReflectorConfig(name=cfg.name, clock=cfg.clock, page_size=cfg.page_size,
                                                resync_period=cfg.resync_period, registry=cfg.registry)
        rcfg = dataclasses.replace(rcfg, transform=cfg.transform)  # the reflector transforms, page by page
        self.reflector = Reflector(lw, self, rcfg)

    # --- controller-facing ----------------------------------------------------------------------

    def add_event_handler(self, handler: ResourceEventHandler, *, inline: bool = False) -> HandlerRegistration:
        """Register `handler`. If the cache is already filled, it first gets on_add for each cached object.
        `inline`: called in the reflector's thread (see the module's doc for what such a handler may do)."""
        reg = HandlerRegistration(handler, self.name, inline=inline)
        with self._lock:
            self._handlers.append(reg)
            if self._synced.is_set():
                reg._push_many([(_ADD, o, True) for o in self.indexer.list()] + [(_SYNCED, None, None)])
            if self._started:
                reg._start()
        return reg

    def has_synced(self) -> bool:
        """True once the first complete LIST is in the cache."""
        return self._synced.is_set()

    def wait_for_cache_sync(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Block (on the clock) until synced, `stop` is set or `timeout` passes; True iff synced."""
        deadline = None if timeout is None else self._clock.now() + timeout
        while not self._synced.is_set():
            if stop is not None and stop.is_set():
                return False
            left = None if deadline is None else deadline - self._clock.now()
            if left is not None and left <= 0:
                return False
            self._clock.wait(self._synced, 0.1 if left is None else min(left, 0.1))
        return True

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    def run(self, stop: threading.Event) -> None:
        """Start the handlers and the reflector; block until `stop` is set, then stop them."""
        with self._lock:
            self._started = True
            for reg in self._handlers:
                reg._start()
        t = threading.Thread(target=self.reflector.run, name=f"reflector-{self.name}", daemon=True)
        t.start()
        stop.wait()
        self.reflector.stop()
        t.join(timeout=10)
        with self._lock:
            for reg in self._handlers:
                reg._stop()

    def start(self, stop: threading.Event) -> threading.Thread:
        """`run` in a daemon thread."""
        t = threading.Thread(target=self.run, args=(stop,), name=f"informer-{self.name}", daemon=True)
        t.start()
        return t

    # --- the reflector's sink -------------------------------------------------------------------

    def _fan_out_locked(self, note: Notification) -> None:
        for reg in self._handlers:
            reg._push(note)

    def replace(self, objs: list[JSON], resource_version: str) -> None:
        with self._lock:
            initial = not self._synced.is_set()
            old = self.indexer.replace(objs)
            if self._handlers:
                key = self.indexer.key_func
                notes: list[Notification] = []
                for o in objs:
                    prev = old.pop(key(o), None)
                    notes.append((_ADD, o, initial) if prev is None else (_UPDATE, prev, o))
                for k, gone in old.items():  # vanished while we were not watching
                    notes.append((_DELETE, DeletedFinalStateUnknown(k, gone), None))
                if initial:
                    notes.append((_SYNCED, None, None))
                for reg in self._handlers:
                    reg._push_many(notes)
            self._synced.set()

    def add(self, obj: JSON) -> None:
        with self._lock:
            old = self.indexer.add(obj)
            self._fan_out_locked((_ADD, obj, False) if old is None else (_UPDATE, old, obj))

    update = add

    def delete(self, obj: JSON) -> None:
        with self._lock:
            self.indexer.delete(obj)
            self._fan_out_locked((_DELETE, obj, None))

    def resync(self) -> None:
        with self._lock:
            notes: list[Notification] = [(_UPDATE, o, o) for o in self.indexer.list()]
            for reg in self._handlers:
                reg._push_many(notes)
