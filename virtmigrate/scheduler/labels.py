"""Node selector requirements and how kube-scheduler matches them against a Node.

Fed by: merge.py (which builds and analyses requirements) and feasibility.py (which tests Node
objects). Nothing here does I/O.

The semantics are those of kube-scheduler v1.37 (k8s.io/component-helpers nodeaffinity and
k8s.io/apimachinery labels):

- `nodeSelector` entry `k: v`: the node has label `k` with value `v`.
- `In` / `NotIn`: label present with a value in the list / label absent or value not in the list.
- `Exists` / `DoesNotExist`: label present / absent.
- `Gt` / `Lt`: label present, both it and the single requirement value parse as int64
  (Go's `strconv.ParseInt(s, 10, 64)`), and the comparison holds.
- `matchFields` supports only `metadata.name` with `In` / `NotIn` and exactly one value.
- A term ANDs its expressions and fields; terms are ORed; an empty term matches no node; a term
  that fails to parse (unknown operator, `In` with no values, `Gt` with a non-integer, ...)
  matches no node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

HOSTNAME_LABEL = "kubernetes.io/hostname"  # set by the kubelet; the node's hostname
NAME_FIELD = "metadata.name"  # the only field matchFields may use

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+")
_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def valid_label_value(value: str) -> bool:
    """Whether a Node (or a selector requirement) may carry this label value."""
    return value == "" or (len(value) <= 63 and _NAME_RE.fullmatch(value) is not None)


def valid_label_key(key: str) -> bool:
    """Whether `key` is a qualified name: `[prefix/]name`, prefix a DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and _NAME_RE.fullmatch(name) is not None


class Op(StrEnum):
    """NodeSelectorOperator values."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"


def parse_int64(text: str) -> int | None:
    """The value of `text` as Go's `strconv.ParseInt(text, 10, 64)` reads it, or None."""
    if not _INT_RE.fullmatch(text):
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


@dataclass(frozen=True)
class Requirement:
    """One requirement on a node label (or, with `field=True`, on the Node's `metadata.name`)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()
    field: bool = False

    @property
    def valid(self) -> bool:
        """Whether kube-scheduler can parse it; an invalid requirement makes its term match nothing."""
        if self.field:
            return self.key == NAME_FIELD and self.operator in (Op.IN, Op.NOT_IN) and len(self.values) == 1
        if not valid_label_key(self.key) or not all(valid_label_value(v) for v in self.values):
            return False
        if self.operator in (Op.IN, Op.NOT_IN):
            return len(self.values) > 0
        if self.operator in (Op.EXISTS, Op.DOES_NOT_EXIST):
            return len(self.values) == 0
        if self.operator in (Op.GT, Op.LT):
            return len(self.values) == 1 and parse_int64(self.values[0]) is not None
        return False

    def matches(self, labels: Mapping[str, str], node_name: str) -> bool:
        """Whether a node with these labels and this name satisfies the requirement."""
        if not self.valid:
            return False
        if self.field:
            return (node_name in self.values) == (self.operator == Op.IN)
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator == Op.IN:
            return present and value in self.values
        if self.operator == Op.NOT_IN:
            return not present or value not in self.values
        if self.operator == Op.EXISTS:
            return present
        if self.operator == Op.DOES_NOT_EXIST:
            return not present
        have = parse_int64(value) if present else None
        if have is None:
            return False
        want = parse_int64(self.values[0])
        assert want is not None  # checked by `valid`
        return have > want if self.operator == Op.GT else have < want

    def describe(self) -> str:
        """`zone In [a, b]`, `gpu Exists`, `metadata.name NotIn [node0]`."""
        if self.operator in (Op.EXISTS, Op.DOES_NOT_EXIST):
            return f"{self.key} {self.operator}"
        if self.operator in (Op.GT, Op.LT) and len(self.values) == 1:
            return f"{self.key} {self.operator} {self.values[0]}"
        return f"{self.key} {self.operator} [{', '.join(self.values)}]"

    def to_json(self) -> dict[str, Any]:
        """The NodeSelectorRequirement dict."""
        out: dict[str, Any] = {"key": self.key, "operator": str(self.operator)}
        if self.values or self.operator not in (Op.EXISTS, Op.DOES_NOT_EXIST):
            out["values"] = list(self.values)
        return out


def equals(key: str, value: str) -> Requirement:
    """The requirement a nodeSelector entry `key: value` imposes."""
    return Requirement(key, Op.IN, (value,))


def _requirement(expr: Mapping[str, Any], *, field: bool) -> Requirement:
    values = expr.get("values") or ()
    return Requirement(str(expr.get("key", "")), str(expr.get("operator", "")),
                       tuple(str(v) for v in values), field)


def term_requirements(term: Mapping[str, Any]) -> tuple[Requirement, ...]:
    """A nodeSelectorTerm's matchExpressions then matchFields, as Requirements."""
    exprs = [_requirement(e, field=False) for e in term.get("matchExpressions") or ()]
    fields = [_requirement(e, field=True) for e in term.get("matchFields") or ()]
    return (*exprs, *fields)


def term_matches(requirements: Sequence[Requirement], labels: Mapping[str, str], node_name: str) -> bool:
    """Whether one parsed term matches the node; an empty term matches nothing."""
    if not requirements or not all(r.valid for r in requirements):
        return False
    return all(r.matches(labels, node_name) for r in requirements)


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether the node's labels satisfy a nodeSelector map."""
    return all(k in labels and labels[k] == v for k, v in selector.items())


def terms_match(terms: Sequence[Mapping[str, Any]], labels: Mapping[str, str], node_name: str) -> bool:
    """Whether required node affinity terms (ORed) match; no terms at all means no constraint."""
    if not terms:
        return True
    return any(term_matches(term_requirements(t), labels, node_name) for t in terms)
