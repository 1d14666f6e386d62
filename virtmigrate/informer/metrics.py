"""Reflector counters, labelled by informer `name`; created once per registry.

    reflector_lists_total               complete LISTs (all pages)
    reflector_watches_total             WATCH requests opened
    reflector_relists_after_gone_total  LISTs forced by 410 Gone / too old resource version
    reflector_watch_events_total        watch events received (bookmarks included)
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter


@dataclass(frozen=True)
class _Families:
    lists: Counter
    watches: Counter
    relists: Counter
    events: Counter


_lock = threading.Lock()
_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families_for(registry: CollectorRegistry) -> _Families:
    with _lock:
        fam = _families.get(registry)
        if fam is None:
            lbl = ("name",)
            fam = _Families(
                lists=Counter("reflector_lists_total", "Complete LISTs by a reflector", lbl,
                              registry=registry),
                watches=Counter("reflector_watches_total", "WATCH requests opened by a reflector", lbl,
                                registry=registry),
                relists=Counter("reflector_relists_after_gone_total",
                                "LISTs forced by 410 Gone (resource version too old)", lbl,
                                registry=registry),
                events=Counter("reflector_watch_events_total", "Watch events received by a reflector",
                               lbl, registry=registry),
            )
            _families[registry] = fam
        return fam


class ReflectorMetrics:
    def __init__(self, name: str, registry: CollectorRegistry | None) -> None:
        fam = _families_for(registry if registry is not None else REGISTRY)
        self.lists = fam.lists.labels(name=name)
        self.watches = fam.watches.labels(name=name)
        self.relists_after_gone = fam.relists.labels(name=name)
        self.events = fam.events.labels(name=name)
