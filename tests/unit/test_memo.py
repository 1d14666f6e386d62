"""Values derived from store objects: computed once per object version, never stale after a change."""

from __future__ import annotations

from typing import Any

import pytest

from virtmigrate.informer import Store
from virtmigrate.informer.memo import Memo


def pod(name: str, phase: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "a", "resourceVersion": rv}, "status": {"phase": phase}}


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def phase_of(self, obj: dict[str, Any]) -> str:
        self.calls += 1
        return str(obj["status"]["phase"])


def test_same_object_is_computed_once() -> None:
    s, memo, c = Store(), Memo[str](), Counting()
    s.add(pod("p", "Pending", "1"))
    for _ in range(3):
        obj = s.get_by_key("a/p")
        assert memo.get("a/p", (obj,), lambda o=obj: c.phase_of(o)) == "Pending"
    assert c.calls == 1


def test_a_change_in_the_store_is_seen_at_once() -> None:
    s, memo, c = Store(), Memo[str](), Counting()
    s.add(pod("p", "Pending", "1"))
    first = s.get_by_key("a/p")
    assert memo.get("a/p", (first,), lambda: c.phase_of(first)) == "Pending"
    s.update(pod("p", "Running", "2"))
    second = s.get_by_key("a/p")
    assert memo.get("a/p", (second,), lambda: c.phase_of(second)) == "Running"
    assert c.calls == 2


def test_an_equal_but_new_object_is_computed_again() -> None:
    """Identity, not content: a store object is never changed in place, but a caller's fresh dict may be."""
    memo, c = Memo[str](), Counting()
    a, b = pod("p", "Pending", "1"), pod("p", "Pending", "1")
    memo.get("a/p", (a,), lambda: c.phase_of(a))
    memo.get("a/p", (b,), lambda: c.phase_of(b))
    assert c.calls == 2


@pytest.mark.parametrize(("first", "second", "recomputed"), [
    pytest.param(("node1",), ("node1",), False, id="equal-strings"),
    pytest.param(("node1",), ("node2",), True, id="other-string"),
    pytest.param((None,), (None,), False, id="none"),
    pytest.param(("node1", None), ("node1",), True, id="other-length"),
])
def test_dependencies_that_are_values_compare_by_value(first: tuple[Any, ...], second: tuple[Any, ...],
                                                       recomputed: bool) -> None:
    memo = Memo[int]()
    calls = []
    memo.get("k", first, lambda: calls.append(1) or 1)
    memo.get("k", second, lambda: calls.append(2) or 2)
    assert len(calls) == (2 if recomputed else 1)


def test_bounded_oldest_stored_first_out() -> None:
    memo = Memo[str](maxsize=2)
    objs = {k: pod(k, "Pending", "1") for k in ("x", "y", "z")}
    c = Counting()
    for k in ("x", "y", "z"):
        memo.get(k, (objs[k],), lambda k=k: c.phase_of(objs[k]))
    assert len(memo) == 2 and c.calls == 3
    memo.get("z", (objs["z"],), lambda: c.phase_of(objs["z"]))
    memo.get("y", (objs["y"],), lambda: c.phase_of(objs["y"]))
    assert c.calls == 3  # still cached
    memo.get("x", (objs["x"],), lambda: c.phase_of(objs["x"]))
    assert c.calls == 4  # evicted first


def test_an_exception_is_not_cached() -> None:
    memo = Memo[str]()
    obj = pod("p", "Pending", "1")

    def broken() -> str:
        raise ValueError("boom")
    with pytest.raises(ValueError):
        memo.get("a/p", (obj,), broken)
    assert memo.get("a/p", (obj,), lambda: "ok") == "ok"


def test_a_forgotten_key_holds_nothing_and_computes_again() -> None:
    """An object that left the store (deleted) is not kept alive by the memo."""
    memo, c = Memo[str](), Counting()
    obj = pod("p", "Pending", "1")
    memo.get("a/p", (obj,), lambda: c.phase_of(obj))
    memo.forget("a/p")
    assert len(memo) == 0
    memo.get("a/p", (obj,), lambda: c.phase_of(obj))
    assert c.calls == 2
