"""EventRecorder: core/v1 Events about our objects, so `kubectl describe migration` tells the story.

Fed by: the controllers (`event(obj, type, reason, message)` at each transition or failure).
Consumed by: users through kubectl; nothing in virtmigrate reads Events back.

Recording never blocks a worker and never fails a sync: events go through a bounded buffer to a few
background threads that create them (client-go's broadcaster does the same); when the buffer is
full, events are dropped and counted. Four writers (one object's Events always go to the same one,
in order) and a buffer of 10,000 absorb the burst of 1,000 Migrations starting at once (bench/).
Repeats of the same (object, reason, message) within the process bump `count` on the existing Event
instead of creating another (client-go's aggregation, simplified).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from virtmigrate import errors
from virtmigrate.clock import Clock, RealClock
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import EVENTS

log = structlog.get_logger("virtmigrate.events")

NORMAL = "Normal"
WARNING = "Warning"
_MICROTIME = "%Y-%m-%dT%H:%M:%SZ"


class EventRecorder(Protocol):
    def event(self, obj: Mapping[str, Any], etype: str, reason: str, message: str) -> None: ...


def new_event(obj: Mapping[str, Any], etype: str, reason: str, message: str, *, component: str,
              timestamp: str, name_suffix: str) -> dict[str, Any]:
    """The core/v1 Event about `obj` (pure)."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'unknown')}.{name_suffix}", "namespace": meta.get("namespace")
                     or "default"},
        "involvedObject": {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""),
                           "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                           "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")},
        "type": etype, "reason": reason, "message": message[:1024],
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": timestamp, "lastTimestamp": timestamp, "count": 1,
    }


class KubeEventRecorder:
    """Writes Events asynchronously. `stop()` flushes what is buffered (bounded) and ends the threads."""

    def __init__(self, client: KubeClient, *, component: str = "virtmigrate-controller",
                 clock: Clock | None = None, buffer: int = 10000, writers: int = 4) -> None:
        self._client = client
        self._component = component
        self._clock = clock or RealClock()
        n = max(writers, 1)
        self._qs: list[queue.Queue[dict[str, Any] | None]] = [queue.Queue(max(buffer // n, 1)) for _ in range(n)]
        self._seen: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._seen_lock = threading.Lock()
        self.dropped = 0
        self._names = itertools.count()
        self._prefix = os.urandom(4).hex()  # unique per process: names never clash across restarts
        self._threads = [threading.Thread(target=self._run, args=(q,), name=f"event-recorder-{i}", daemon=True)
                         for i, q in enumerate(self._qs)]
        for t in self._threads:
            t.start()

    def event(self, obj: Mapping[str, Any], etype: str, reason: str, message: str) -> None:
        ev = new_event(obj, etype, reason, message, component=self._component,
                       timestamp=self._clock.wall().strftime(_MICROTIME),
                       name_suffix=f"{self._prefix}{next(self._names):08x}")
        uid = str(ev["involvedObject"]["uid"] or ev["involvedObject"]["name"])
        try:
            self._qs[hash(uid) % len(self._qs)].put_nowait(ev)
        except queue.Full:
            self.dropped += 1  # never block a worker on events

    def _run(self, q: queue.Queue[dict[str, Any] | None]) -> None:
        while True:
            ev = q.get()
            if ev is None:
                return
            self._write(ev)

    def _write(self, ev: dict[str, Any]) -> None:
        inv = ev["involvedObject"]
        key = (inv["uid"], ev["type"], ev["reason"], ev["message"])
        with self._seen_lock:
            prior = self._seen.get(key)
            if prior is not None:
                prior["count"] += 1
                prior["lastTimestamp"] = ev["lastTimestamp"]
                bump = {"count": prior["count"], "lastTimestamp": prior["lastTimestamp"]}
        try:
            if prior is not None:
                self._client.patch(EVENTS, prior["metadata"]["name"], bump, prior["metadata"]["namespace"])
                return
            self._client.create(EVENTS, ev)
            with self._seen_lock:
                if len(self._seen) > 4096:
                    self._seen.clear()  # bounded memory; aggregation is best effort
                self._seen[key] = ev
        except errors.KubeError as e:
            log.warning("event_failed", reason=ev["reason"], object=inv["name"], error=str(e))

    def stop(self, timeout: float = 5.0) -> None:
        for q in self._qs:
            try:
                q.put(None, timeout=timeout)
            except queue.Full:
                return
        for t in self._threads:
            t.join(timeout)


class RecordingEventRecorder:
    """Keeps events in memory (tests): `events` is a list of (kind/name, type, reason, message)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def event(self, obj: Mapping[str, Any], etype: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        with self._lock:
            self.events.append((f"{obj.get('kind', '')}/{meta.get('name', '')}", etype, reason, message))
