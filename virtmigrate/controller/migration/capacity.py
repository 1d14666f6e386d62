"""Pure capacity decisions: which Pending Migrations may start now, oldest first.

Fed by: migration/observe.py (every active Migration, from the active index, reduced to `Candidate`s) and the
controller's event handlers (to wake the Pending Migrations that a finished one makes room for).
Consumed by: the phase machine, through `Observed.admit` / `capacity_message`.

Limits: at most `max_running` Migrations admitted (Scheduling..Running) in the cluster and at
most `max_per_node` leaving any one source node. Pending candidates are served by priority
(evacuations of a draining node before users' Migrations, as KubeVirt's system-maintenance >
user), then in order of creation (then name); one that cannot start because its own source node is full does not hold
back younger ones on other nodes, but the cluster-wide limit holds everyone back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_running: int = 5
    max_per_node: int = 2


@dataclass(frozen=True)
class Candidate:
    key: str            # namespace/name
    created: str        # metadata.creationTimestamp (RFC 3339 sorts as text)
    source_node: str    # where the VM runs (Pending) or ran (admitted)
    active: bool        # admitted and not terminal: it holds a slot
    priority: int = 0   # higher first: PRIORITY_EVACUATION for a node's evacuation, PRIORITY_USER otherwise


PRIORITY_USER = 0        # a Migration a user created
PRIORITY_EVACUATION = 1  # created by the evacuation controller (label virtmigrate.kubevirt.io/evacuation)


@dataclass(frozen=True)
class Admission:
    admit: bool
    message: str = ""   # why not, for the WaitingForCapacity condition


def decide_admissions(candidates: Iterable[Candidate], limits: Limits) -> dict[str, Admission]:
    """An Admission for every Pending (non-active) candidate."""
    cands = list(candidates)
    running = sum(1 for c in cands if c.active)
    per_node: Counter[str] = Counter(c.source_node for c in cands if c.active)
    out: dict[str, Admission] = {}
    for c in sorted((c for c in cands if not c.active), key=lambda c: (-c.priority, c.created, c.key)):
        if running >= limits.max_running:
            out[c.key] = Admission(False, f"{running} migrations are running in the cluster (limit "
                                          f"{limits.max_running}); this one starts when one finishes")
        elif per_node[c.source_node] >= limits.max_per_node:
            out[c.key] = Admission(False, f"{per_node[c.source_node]} migrations are leaving node "
                                          f"{c.source_node} (limit {limits.max_per_node} per node); this one "
                                          "starts when one finishes")
        else:
            out[c.key] = Admission(True)
            running += 1
            per_node[c.source_node] += 1
    return out


def decide_admission(key: str, candidates: Iterable[Candidate], limits: Limits) -> Admission:
    """The Admission of one Pending candidate (admitted if it is not among the candidates)."""
    return decide_admissions(candidates, limits).get(key, Admission(True))
