"""Satisfiability of node requirements: can any valid Node satisfy all of them at once?

Fed by: merge.py, which asks, per affinity term, whether the requirements on each key can hold
together. Consumed only there. Pure, no I/O.

Requirements on different keys are independent (each label is set freely), so a conjunction is
satisfiable iff the requirements on every single key are. For one key we decide exactly, over the
values a Node can really carry:

- a label value is at most 63 characters from `[A-Za-z0-9_.-]`, starting and ending alphanumeric,
  so an integer label (`Gt` / `Lt`) is a non-negative number, written with up to 63 digits;
  each integer thus has several spellings (`7`, `07`, `007`, ...) and a `NotIn` list excludes an
  integer only if it lists every spelling of it;
- `metadata.name` is always present and only `In` / `NotIn` apply to it;
- without `In` or `Gt`/`Lt`, a finite `NotIn` list always leaves some value free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from virtmigrate.scheduler.labels import INT64_MAX, Op, Requirement, parse_int64

MAX_LABEL_VALUE_LENGTH = 63

_PRESENT = frozenset({Op.IN, Op.EXISTS, Op.GT, Op.LT})


def _spellings(number: int) -> list[str]:
    """Every label value that reads as `number` (zero padding up to the length limit)."""
    digits = str(number)
    return ["0" * pad + digits for pad in range(MAX_LABEL_VALUE_LENGTH - len(digits) + 1)]


def _integer_free(low: int, high: int, excluded: frozenset[str]) -> bool:
    """Whether some integer in [low, high] has a spelling outside `excluded`."""
    if low > high:
        return False
    if high - low + 1 > len(excluded):
        return True  # each excluded value spells one integer only: some integer is untouched
    return any(not all(s in excluded for s in _spellings(n)) for n in range(low, high + 1))


def key_satisfiable(requirements: Sequence[Requirement]) -> bool:
    """Whether some node satisfies every requirement; all of them concern the same key.

    Exact for valid label values; an invalid requirement is never satisfiable.
    """
    if not requirements:
        return True
    if not all(r.valid for r in requirements):
        return False
    if requirements[0].field:
        return _field_satisfiable(requirements)
    ops = {r.operator for r in requirements}
    if Op.DOES_NOT_EXIST in ops:
        return not (ops & _PRESENT)  # absent satisfies NotIn and DoesNotExist, nothing else
    if not ops & _PRESENT:
        return True  # only NotIn: the label may be absent
    key = requirements[0].key
    in_sets = [set(r.values) for r in requirements if r.operator == Op.IN]
    if in_sets:
        candidates = set.intersection(*in_sets)
        return any(all(r.matches({key: v}, "") for r in requirements) for v in sorted(candidates))
    bounds = [r for r in requirements if r.operator in (Op.GT, Op.LT)]
    if not bounds:
        return True  # Exists and finitely many NotIn values
    low, high = 0, INT64_MAX  # a label value cannot start with a sign: integers are >= 0
    for r in bounds:
        limit = parse_int64(r.values[0])
        assert limit is not None  # checked by `valid`
        if r.operator == Op.GT:
            low = max(low, limit + 1)
        else:
            high = min(high, limit - 1)
    excluded = frozenset(v for r in requirements if r.operator == Op.NOT_IN for v in r.values)
    return _integer_free(low, high, excluded)


def _field_satisfiable(requirements: Sequence[Requirement]) -> bool:
    wanted = [r.values[0] for r in requirements if r.operator == Op.IN]
    banned = {r.values[0] for r in requirements if r.operator == Op.NOT_IN}
    if not wanted:
        return True  # a node may be called anything not banned
    return len(set(wanted)) == 1 and wanted[0] not in banned


def group_by_key(requirements: Iterable[Requirement]) -> dict[tuple[bool, str], list[Requirement]]:
    """Requirements keyed by (is a field, key), in first-seen order."""
    groups: dict[tuple[bool, str], list[Requirement]] = {}
    for r in requirements:
        groups.setdefault((r.field, r.key), []).append(r)
    return groups


def satisfiable(requirements: Iterable[Requirement]) -> bool:
    """Whether some node satisfies the conjunction of all the requirements."""
    return all(key_satisfiable(group) for group in group_by_key(requirements).values())
