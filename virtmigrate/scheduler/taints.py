"""Taints and tolerations, as kube-scheduler's TaintToleration and NodeUnschedulable filters read them.

Fed by: feasibility.py with a Node's `spec.taints` and the target pod's tolerations. Pure.

- Only `NoSchedule` and `NoExecute` taints keep a pod off a node (`PreferNoSchedule` only scores).
- A toleration with an empty effect matches every effect; an empty key (with `Exists`) every key;
  operator `Equal` (or empty) compares values, `Exists` ignores them. `Gt` / `Lt` tolerations
  sit behind the alpha gate TaintTolerationComparisonOperators (off by default) and match nothing.
- A cordoned node (`spec.unschedulable`) admits a pod only if it tolerates
  `node.kubernetes.io/unschedulable:NoSchedule`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
_FILTERING_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Whether one toleration tolerates one taint (k8s.io/api core/v1 `ToleratesTaint`)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect", ""):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key", ""):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Equal":
        return bool((toleration.get("value") or "") == (taint.get("value") or ""))
    return bool(operator == "Exists")


def tolerated(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Whether any of the tolerations tolerates the taint."""
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated_taint(taints: Sequence[Mapping[str, Any]],
                            tolerations: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first NoSchedule/NoExecute taint no toleration covers, or None."""
    for taint in taints:
        if taint.get("effect") in _FILTERING_EFFECTS and not tolerated(tolerations, taint):
            return taint
    return None


def describe_taint(taint: Mapping[str, Any]) -> str:
    """`{dedicated: NoSchedule}`, or `{dedicated=gpu: NoSchedule}` when the taint has a value."""
    key = taint.get("key", "")
    value = taint.get("value") or ""
    return "{" + (f"{key}={value}" if value else key) + f": {taint.get('effect', '')}" + "}"
