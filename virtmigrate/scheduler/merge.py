"""Merge a VM's node constraints with a Migration's into the target pod's, or explain why they clash.

Fed by: the migration controller, with the VM's `spec.nodeSelector`, its required node affinity
terms and tolerations, the Migration's `spec.nodeSelector`, the source node's name and the
cluster-wide default selector. Consumed by: the target pod builder (`Merged.pod_spec_fields()`)
and the controller's failure path (`Contradiction.message` becomes the Migration's status and a
Warning event). Pure: no I/O, no clock, inputs are never mutated and outputs share nothing with
them.

Precedence (see also the package docstring):

1. The VM's and the Migration's constraints are ANDed; neither overrides the other. The same
   nodeSelector key with two values, or a selector no affinity term can live with, is a
   Contradiction, not a silent win for either side.
2. The default selector fills in only keys that neither the VM (selector or any affinity term)
   nor the Migration mentions: it is a default, never a third party to a conflict.
3. Every required term also gets `kubernetes.io/hostname NotIn [source]` and
   `matchFields metadata.name NotIn [source]`: a migration must leave its node. A VM pinned to
   its source node is therefore a Contradiction too.
4. Affinity terms that can never hold next to the merged selector are dropped (the ORed terms
   that remain mean the same); if none remains, that is a Contradiction.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from virtmigrate.scheduler.labels import (
    HOSTNAME_LABEL,
    NAME_FIELD,
    Op,
    Requirement,
    equals,
    selector_matches,
    term_requirements,
    terms_match,
)
from virtmigrate.scheduler.solve import key_satisfiable


class Origin(Enum):
    """Who asked for a requirement."""

    VM_SELECTOR = "vm-selector"  # the VM's spec.nodeSelector
    VM_AFFINITY = "vm-affinity"  # one of the VM's required node affinity terms
    MIGRATION_SELECTOR = "migration-selector"  # the Migration's spec.nodeSelector
    SOURCE = "source"  # the target must not be the source node
    DEFAULT = "default"  # the cluster-wide default selector


_VM_SIDE = (Origin.VM_SELECTOR, Origin.VM_AFFINITY)


@dataclass(frozen=True)
class _Tagged:
    requirement: Requirement
    origin: Origin
    term: int = -1  # index of the VM affinity term, for VM_AFFINITY

    def describe(self) -> str:
        r = self.requirement
        if self.origin in (Origin.VM_SELECTOR, Origin.MIGRATION_SELECTOR):
            return f"{r.key}={r.values[0]} (spec.nodeSelector)"
        if self.origin is Origin.DEFAULT:
            return f"{r.key}={r.values[0]} (cluster default selector)"
        if self.origin is Origin.VM_AFFINITY:
            return f"{r.describe()} (node affinity term {self.term + 1})"
        return f"{r.describe()} (a migration must leave its source node)"


@dataclass(frozen=True)
class Conflict:
    """One key no node can satisfy: what the VM asks of it and what the Migration side asks.

    A side is "" when the other side alone is unsatisfiable (e.g. the VM's own terms clash).
    """

    key: str
    vm_side: str
    migration_side: str


@dataclass(frozen=True)
class Contradiction:
    """No node can satisfy the VM and the Migration together; `message` tells the user the fix."""

    conflicts: tuple[Conflict, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Merged:
    """The target pod's node constraints. Treat as read-only; `pod_spec_fields()` gives fresh copies."""

    node_selector: dict[str, str]
    required_terms: list[dict[str, Any]]
    tolerations: list[dict[str, Any]]
    source_node: str

    def affinity(self) -> dict[str, Any]:
        """The pod's `spec.affinity` (a fresh dict)."""
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": copy.deepcopy(self.required_terms)}}}

    def pod_spec_fields(self) -> dict[str, Any]:
        """`nodeSelector`, `affinity` and `tolerations` to put in the target pod's spec (fresh)."""
        return {"nodeSelector": dict(self.node_selector), "affinity": self.affinity(),
                "tolerations": copy.deepcopy(self.tolerations)}


def source_exclusion(source_node: str) -> tuple[Requirement, Requirement]:
    """The two requirements that keep the target off the source node."""
    return (Requirement(HOSTNAME_LABEL, Op.NOT_IN, (source_node,)),
            Requirement(NAME_FIELD, Op.NOT_IN, (source_node,), field=True))


def merge_constraints(
    vm_node_selector: Mapping[str, str] | None,
    vm_required_terms: Sequence[Mapping[str, Any]] | None,
    *,
    vm_tolerations: Sequence[Mapping[str, Any]] | None,
    migration_node_selector: Mapping[str, str] | None,
    source_node: str,
    default_selector: Mapping[str, str] | None = None,
    vm_name: str = "",
    migration_name: str = "",
) -> Merged | Contradiction:
    """Decide the target pod's node constraints (precedence in the module docstring)."""
    if not source_node:
        raise ValueError("source_node is required: a migration must leave a known node")
    vm_sel = dict(vm_node_selector or {})
    mig_sel = dict(migration_node_selector or {})
    raw_terms = list(vm_required_terms or ())
    vm_terms = [term_requirements(t) for t in raw_terms]
    mentioned = set(vm_sel) | set(mig_sel) | {r.key for t in vm_terms for r in t if not r.field}
    defaults = {k: v for k, v in (default_selector or {}).items() if k not in mentioned}

    base = [_Tagged(equals(k, v), Origin.DEFAULT) for k, v in defaults.items()]
    base += [_Tagged(equals(k, v), Origin.VM_SELECTOR) for k, v in vm_sel.items()]
    base += [_Tagged(equals(k, v), Origin.MIGRATION_SELECTOR) for k, v in mig_sel.items()]
    base += [_Tagged(r, Origin.SOURCE) for r in source_exclusion(source_node)]

    term_sets: list[list[_Tagged]] = (
        [base + [_Tagged(r, Origin.VM_AFFINITY, i) for r in reqs] for i, reqs in enumerate(vm_terms)]
        if vm_terms else [base])
    conflicts: list[Conflict] = []
    kept: list[int] = []
    for i, tagged in enumerate(term_sets):
        found = _term_conflicts(tagged)
        if vm_terms and not vm_terms[i]:
            found.append(Conflict(f"node affinity term {i + 1}", "an empty term, which matches no node", ""))
        if found:
            conflicts += [c for c in found if c not in conflicts]
        else:
            kept.append(i)
    if not kept:
        return Contradiction(tuple(conflicts), _message(conflicts, vm_name, migration_name))

    exclusion = [r.to_json() for r in source_exclusion(source_node)]
    terms = []
    for i in kept:
        term: dict[str, Any] = copy.deepcopy(dict(raw_terms[i])) if vm_terms else {}
        term["matchExpressions"] = [*term.get("matchExpressions", []), exclusion[0]]
        term["matchFields"] = [*term.get("matchFields", []), exclusion[1]]
        terms.append(term)
    return Merged(node_selector={**defaults, **vm_sel, **mig_sel}, required_terms=terms,
                  tolerations=copy.deepcopy([dict(t) for t in vm_tolerations or ()]), source_node=source_node)


def _term_conflicts(tagged: list[_Tagged]) -> list[Conflict]:
    groups: dict[tuple[bool, str], list[_Tagged]] = {}
    for t in tagged:
        groups.setdefault((t.requirement.field, t.requirement.key), []).append(t)
    out = []
    for (_, key), items in groups.items():
        if key_satisfiable([t.requirement for t in items]):
            continue
        vm = [t for t in items if t.origin in _VM_SIDE]
        other = [t for t in items if t.origin not in _VM_SIDE]
        if not key_satisfiable([t.requirement for t in vm]):
            other = []  # the VM's own requirements already clash
        elif not key_satisfiable([t.requirement for t in other]):
            vm = []  # the Migration side alone is impossible
        out.append(Conflict(key, ", ".join(t.describe() for t in vm), ", ".join(t.describe() for t in other)))
    return out


def _message(conflicts: Sequence[Conflict], vm_name: str, migration_name: str) -> str:
    vm = f"VM {vm_name}" if vm_name else "the VM"
    mig = f"Migration {migration_name}" if migration_name else "the Migration"
    parts = []
    for c in conflicts:
        if c.vm_side and c.migration_side:
            parts.append(f"{vm} requires {c.vm_side} but {mig} requires {c.migration_side}")
        elif c.vm_side:
            parts.append(f"{vm}'s own constraints on {c.key} exclude each other: {c.vm_side}")
        else:
            parts.append(f"{mig} requires {c.migration_side}, which no node can satisfy")
    keys = ", ".join(dict.fromkeys(c.key for c in conflicts))
    return (f"no node can satisfy both {vm} and {mig}: " + "; ".join(parts)
            + f". Remove or change one of them (the Migration's spec.nodeSelector, or the VM's "
              f"spec.nodeSelector or node affinity) for: {keys}.")


def node_matches(node_labels: Mapping[str, str], merged: Merged, *, node_name: str) -> bool:
    """Whether kube-scheduler's NodeAffinity filter admits this node for the merged constraints."""
    return selector_matches(merged.node_selector, node_labels) and terms_match(
        merged.required_terms, node_labels, node_name)
