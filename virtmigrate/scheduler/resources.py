"""Resource quantities and pod requests, as kube-scheduler's NodeResourcesFit counts them.

Fed by: feasibility.py (Node allocatable, pods bound to a node). Pure, no I/O.

- `parse_quantity` reads Kubernetes quantities ("512Mi", "1.5Gi", "2", "100m", "1e3").
- `pod_requests` is k8s.io/component-helpers `PodRequests` without pod-level resources or
  in-place resize: max(sum of containers + restartable init containers, the largest init
  container plus the restartable init containers started before it) + `spec.overhead`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

_QUANTITY_RE = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_SUFFIX = {
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000), "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6),
    "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18),
}


@functools.lru_cache(maxsize=4096)  # clusters repeat a handful of quantities thousands of times
def parse_quantity(text: object) -> Fraction:
    """The exact value of a quantity; ValueError if it is not one."""
    if isinstance(text, bool):
        raise ValueError(f"not a quantity: {text!r}")
    if isinstance(text, int | float):
        return Fraction(text)
    match = _QUANTITY_RE.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return Fraction(number) * Fraction(10) ** int(suffix[1:])
    return Fraction(number) * _SUFFIX[suffix]


def _quantity_or_zero(value: object) -> Fraction:
    try:
        return parse_quantity(value)
    except ValueError:
        return Fraction(0)  # an unparseable quantity never passed API validation; count nothing


@dataclass(frozen=True)
class Requests:
    """CPU in millicores and memory in bytes, rounded up as the scheduler does."""

    cpu_millis: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes)

    def max(self, other: Requests) -> Requests:
        return Requests(max(self.cpu_millis, other.cpu_millis), max(self.memory_bytes, other.memory_bytes))


def requests_of(resources: Mapping[str, Any] | None) -> Requests:
    """A ResourceList (`{"cpu": "500m", "memory": "1Gi"}`) as Requests."""
    resources = resources or {}
    return Requests(cpu_millis=math.ceil(_quantity_or_zero(resources.get("cpu", 0)) * 1000),
                    memory_bytes=math.ceil(_quantity_or_zero(resources.get("memory", 0))))


def pod_requests(pod: Mapping[str, Any]) -> Requests:
    """What a pod takes from its node's allocatable resources."""
    spec = pod.get("spec") or {}
    total = Requests()
    for c in spec.get("containers") or ():
        total += requests_of((c.get("resources") or {}).get("requests"))
    sidecars = Requests()
    init_peak = Requests()
    for c in spec.get("initContainers") or ():
        own = requests_of((c.get("resources") or {}).get("requests"))
        if c.get("restartPolicy") == "Always":
            total += own
            sidecars += own
            init_peak = init_peak.max(sidecars)
        else:
            init_peak = init_peak.max(own + sidecars)
    return total.max(init_peak) + requests_of(spec.get("overhead"))


def allocatable_of(node: Mapping[str, Any]) -> tuple[Requests, int]:
    """A Node's allocatable cpu/memory and pod count (0 when missing, as the scheduler reads it)."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return requests_of(alloc), math.floor(_quantity_or_zero(alloc.get("pods", 0)))


def format_bytes(n: int) -> str:
    """1073741824 -> "1Gi"; 1536 -> "1.5Ki"; 100 -> "100"."""
    for suffix, size in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)
