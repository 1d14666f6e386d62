"""A fake API-server collection for unit tests of reflectors and informers.

It keeps objects with resourceVersions and an event history, answers paginated LISTs and
WATCHes from any resourceVersion, and lets a test drop watches, compact history (so old
resourceVersions answer 410 Gone), inject errors and send bookmarks. It implements
virtmigrate.kube.listwatch.ListerWatcher.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from virtmigrate import errors
from virtmigrate.kube.client import WatchEvent

JSON = dict[str, Any]
_END = object()


def obj(name: str, ns: str = "default", **fields: Any) -> JSON:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, **fields}


class FakeWatch:
    def __init__(self, lw: FakeListerWatcher, rv: int, timeout_seconds: int, allow_bookmarks: bool) -> None:
        self.rv = rv
        self.timeout_seconds = timeout_seconds
        self.allow_bookmarks = allow_bookmarks
        self._q: queue.Queue[object] = queue.Queue()
        self._lw = lw
        self.stopped = False

    def push(self, item: object) -> None:
        self._q.put(item)

    def stop(self) -> None:
        self.stopped = True
        self._q.put(_END)

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, WatchEvent)
            yield item


class FakeListerWatcher:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.rv = 100
        self.objects: dict[str, JSON] = {}
        self.history: list[tuple[int, str, JSON]] = []
        self.compacted = 0
        self.watches: list[FakeWatch] = []
        self.open_watches: list[FakeWatch] = []
        self.list_calls: list[dict[str, Any]] = []
        self.list_errors: list[BaseException] = []
        self.watch_errors: list[BaseException] = []
        self.expire_continue = False
        self._snapshots: dict[str, tuple[int, list[JSON]]] = {}

    # --- server-side changes --------------------------------------------------------------------

    def _emit_locked(self, etype: str, o: JSON) -> None:
        self.rv += 1
        o = copy.deepcopy(o)
        o["metadata"]["resourceVersion"] = str(self.rv)
        key = f"{o['metadata']['namespace']}/{o['metadata']['name']}"
        if etype == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = o
        self.history.append((self.rv, etype, o))
        for w in self.open_watches:
            w.push(WatchEvent(etype, copy.deepcopy(o)))

    def create(self, o: JSON) -> None:
        with self._lock:
            self._emit_locked("ADDED", o)

    def update(self, o: JSON) -> None:
        with self._lock:
            self._emit_locked("MODIFIED", o)

    def delete(self, name: str, ns: str = "default") -> None:
        with self._lock:
            self._emit_locked("DELETED", self.objects[f"{ns}/{name}"])

    def silently(self) -> _Silent:
        """Changes made inside `with lw.silently():` reach no open watch (as if it were down)."""
        return _Silent(self)

    def compact(self) -> None:
        """Forget history: watches from any older resourceVersion now answer 410."""
        with self._lock:
            self.compacted = self.rv
            self.history.clear()

    def bookmark(self) -> None:
        with self._lock:
            self.rv += 1
            for w in self.open_watches:
                if w.allow_bookmarks:
                    w.push(WatchEvent("BOOKMARK", {"kind": "ConfigMap",
                                                   "metadata": {"resourceVersion": str(self.rv)}}))

    def drop_watches(self, error: BaseException | None = None) -> None:
        """End every open watch, normally (server timeout) or with `error`."""
        with self._lock:
            for w in self.open_watches:
                w.push(error if error is not None else _END)
            self.open_watches.clear()

    def wait_for_watches(self, n: int, timeout: float = 5.0) -> bool:
        """Block (real time, bounded) until `n` watches have been opened in total."""
        end = time.monotonic() + timeout
        with self._lock:
            while len(self.watches) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    # --- ListerWatcher --------------------------------------------------------------------------

    def list(self, *, limit: int | None = None, continue_: str | None = None,
             resource_version: str | None = None) -> JSON:
        with self._lock:
            self.list_calls.append({"limit": limit, "continue": continue_, "resourceVersion": resource_version})
            if self.list_errors:
                raise self.list_errors.pop(0)
            if continue_:
                if self.expire_continue:
                    self.expire_continue = False
                    raise errors.Gone("continue token expired", status=410)
                rv, items = self._snapshots.pop(continue_)
            else:
                rv, items = self.rv, [copy.deepcopy(self.objects[k]) for k in sorted(self.objects)]
            page, rest = (items[:limit], items[limit:]) if limit else (items, [])
            meta: JSON = {"resourceVersion": str(rv)}
            if rest:
                token = f"c{len(self.list_calls)}"
                self._snapshots[token] = (rv, rest)
                meta["continue"] = token
            return {"kind": "List", "metadata": meta, "items": page}

    def watch(self, *, resource_version: str, timeout_seconds: int, allow_bookmarks: bool = True) -> FakeWatch:
        with self._lock:
            w = FakeWatch(self, int(resource_version), timeout_seconds, allow_bookmarks)
            self.watches.append(w)
            if self.watch_errors:
                w.push(self.watch_errors.pop(0))
            elif int(resource_version) < self.compacted:
                w.push(errors.Gone(f"too old resource version: {resource_version} ({self.compacted})",
                                   status=410))
            else:
                for rv, etype, o in self.history:
                    if rv > int(resource_version):
                        w.push(WatchEvent(etype, copy.deepcopy(o)))
                self.open_watches.append(w)
            self._lock.notify_all()
            return w


class _Silent:
    def __init__(self, lw: FakeListerWatcher) -> None:
        self._lw = lw
        self._saved: list[FakeWatch] = []

    def __enter__(self) -> FakeListerWatcher:
        with self._lw._lock:
            self._saved, self._lw.open_watches = self._lw.open_watches, []
        return self._lw

    def __exit__(self, *exc: object) -> None:
        with self._lw._lock:
            self._lw.open_watches = self._saved + self._lw.open_watches


class Recorder:
    """A ResourceEventHandler that records events; `wait_for(n)` blocks (bounded) for n events."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()

    def _record(self, ev: tuple[Any, ...]) -> None:
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()

    def on_add(self, o: JSON, is_in_initial_list: bool) -> None:
        self._record(("add", o["metadata"]["name"], is_in_initial_list, o))

    def on_update(self, old: JSON, new: JSON) -> None:
        self._record(("update", new["metadata"]["name"], old, new))

    def on_delete(self, o: Any) -> None:
        self._record(("delete", o, None, None))

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        end = time.monotonic() + timeout
        with self._cond:
            while len(self.events) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.events)} events, wanted {n}: {self.events}")
                self._cond.wait(left)
            return list(self.events)
