"""Values derived from a store's objects, computed once per object version.

A store never changes an object it holds: a change arrives as a new object (store.py). So a value
computed from the very objects a store holds now — a parsed view, a name derived from a uid — is right
for as long as the store still holds those objects, whatever the clock says. Controllers sync one key
many times per object version (every event of a related pod, every requeue); `Memo` lets each version
be parsed once.

Fed by: controllers, with a key, the store objects a value depends on (compared by identity) and how to
compute it. Consumed by: the same controllers. Nothing here reads the clock or the API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")
_VALUES = (str, int, float)  # compared by value; anything else (store objects) by identity


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """The same dependencies: the same objects (identity), strings and numbers equal."""
    return len(a) == len(b) and all(x is y or (type(x) in _VALUES and x == y) for x, y in zip(a, b, strict=True))


class Memo(Generic[V]):
    """`key -> (dependencies, value)` for at most `maxsize` keys (beyond, the oldest stored goes first).

    Invariant: an entry's value is what its `compute` returned for exactly those dependencies; an entry
    keeps its dependency objects alive, so their identities cannot be reused while it is cached. Safe from
    several threads: an entry is one tuple, read and replaced whole (two threads may both compute a value;
    either result is right). Memory only: a restart starts empty and computes again."""

    def __init__(self, *, maxsize: int = 4096) -> None:
        self._maxsize = maxsize
        self._entries: dict[Hashable, tuple[tuple[Any, ...], V]] = {}

    def get(self, key: Hashable, deps: tuple[Any, ...], compute: Callable[[], V]) -> V:
        """The value for `key` computed from `deps`: the cached one if `deps` are the same, else `compute()`
        (an exception it raises is not cached)."""
        entry = self._entries.get(key)
        if entry is not None:
            cached = entry[0]
            if (cached[0] is deps[0] and len(cached) == len(deps) == 1) or same(cached, deps):
                return entry[1]
        value = compute()
        self.put(key, deps, value)
        return value

    def peek(self, key: Hashable, deps: tuple[Any, ...]) -> V | None:
        """The cached value for `key` if it was computed from `deps`, else None (nothing is computed)."""
        entry = self._entries.get(key)
        if entry is not None and same(entry[0], deps):
            return entry[1]
        return None

    def put(self, key: Hashable, deps: tuple[Any, ...], value: V) -> None:
        """Cache `value` as computed from `deps` (a caller that computes it along with something else)."""
        entries = self._entries
        entries.pop(key, None)  # re-inserted last: eviction goes by when a key was last stored
        entries[key] = (deps, value)
        if len(entries) > self._maxsize:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread evicted first
                del entries[next(iter(entries))]

    def forget(self, key: Hashable) -> None:
        """Drop `key`'s entry (its object left the store: nothing keeps it alive here)."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
