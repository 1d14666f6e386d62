"""What an informer tells its handlers: add, update, delete, and the tombstone of a lost delete.

Consumed by controllers, which register a `ResourceEventHandler` with a `SharedInformer`
(usually a `FuncHandler` that turns each event into a work-queue key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

JSON = dict[str, Any]


@dataclass(frozen=True)
class DeletedFinalStateUnknown:
    """An object that disappeared while the watch was down: the delete itself was never seen.

    `obj` is the last state the informer knew (it may be stale). client-go's
    `cache.DeletedFinalStateUnknown`; handlers' `on_delete` receives it instead of the object.
    """

    key: str
    obj: JSON


class ResourceEventHandler(Protocol):
    """Called from one informer-owned thread per handler, in event order; must not block long.
    Objects are shared with the cache: never modify them."""

    def on_add(self, obj: JSON, is_in_initial_list: bool) -> None: ...

    def on_update(self, old: JSON, new: JSON) -> None: ...

    def on_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None: ...


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class FuncHandler:
    """A handler from plain functions; missing ones ignore their event."""

    add: Callable[[JSON, bool], None] = _ignore
    update: Callable[[JSON, JSON], None] = _ignore
    delete: Callable[[JSON | DeletedFinalStateUnknown], None] = _ignore

    def on_add(self, obj: JSON, is_in_initial_list: bool) -> None:
        self.add(obj, is_in_initial_list)

    def on_update(self, old: JSON, new: JSON) -> None:
        self.update(old, new)

    def on_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None:
        self.delete(obj)


def object_of(obj: JSON | DeletedFinalStateUnknown) -> JSON:
    """The object of a delete event, unwrapping a tombstone."""
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
