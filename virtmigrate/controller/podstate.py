"""Read-only views of the pods a Migration involves: source launcher, target launcher, agent.

Fed by: the migration controller's sync, from pods in the informer's store (never modified).
Consumed by: the pure phase machine (migration/decide.py), which only ever sees these views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN, DomainFacts, Job


@dataclass(frozen=True, slots=True)
class PodView:
    """What the phase machine needs to know about one pod."""

    name: str
    uid: str = ""
    node: str = ""                 # spec.nodeName: set once the scheduler bound the pod
    phase: str = "Pending"         # Pending, Running, Succeeded, Failed, Unknown
    ready: bool = False            # the Ready condition is True
    deleting: bool = False         # metadata.deletionTimestamp is set
    unschedulable: str = ""        # the scheduler's message when PodScheduled is False/Unschedulable
    exit_code: int | None = None   # the first container's exit code once it terminated
    termination_message: str = ""  # the first container's termination message
    start_time: str = ""           # status.startTime
    finished_at: str = ""          # the first container's terminated.finishedAt (RFC 3339)
    deleted_at: str = ""           # metadata.deletionTimestamp (when the deletion is forced: asked + grace)
    deletion_grace_s: int = 0      # metadata.deletionGracePeriodSeconds
    finalizers: tuple[str, ...] = ()
    domain: DomainFacts | None = None  # a launcher's report of its domain (annotation), None when none

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None or self.phase in ("Succeeded", "Failed")

    @property
    def running(self) -> bool:
        """The pod's process is alive (it may still be stopping)."""
        return self.phase == "Running" and self.exit_code is None

    @property
    def keeps_persistent_copy(self) -> bool:
        """The launcher reports a paused, persistently defined copy of the guest on its node, with no migration
        job on it (a source paused at the switch-over, its job still running, is no leftover). libvirt's rule
        for what a migration leaves behind is to destroy only a paused, *non-persistent* leftover: deleting
        this pod would make its launcher destroy and undefine that copy, so the controllers keep it (with a
        Warning) for an admin to decide. A launcher that has exited holds nothing: its last report is history."""
        f = self.domain
        return f is not None and f.paused and f.persistent and f.job == Job.NONE and not self.terminated


def pod_view(pod: Mapping[str, Any] | None) -> PodView | None:
    """A view of `pod`, or None when there is no pod."""
    if pod is None:
        return None
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ready = False
    unschedulable = ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
        elif (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
              and cond.get("reason") == "Unschedulable"):
            unschedulable = str(cond.get("message") or "Unschedulable")
    exit_code: int | None = None
    message = ""
    finished = ""
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is not None:
            exit_code = int(term.get("exitCode", -1))
            message = str(term.get("message") or "")
            finished = str(term.get("finishedAt") or "")
        break  # our pods have one container: the first is the one that matters
    return PodView(
        name=str(meta.get("name", "")), uid=str(meta.get("uid", "")),
        node=str(spec.get("nodeName") or ""), phase=str(status.get("phase") or "Pending"),
        ready=ready, deleting=bool(meta.get("deletionTimestamp")), unschedulable=unschedulable,
        exit_code=exit_code, termination_message=message, start_time=str(status.get("startTime") or ""),
        finished_at=finished, deleted_at=str(meta.get("deletionTimestamp") or ""),
        deletion_grace_s=int(meta.get("deletionGracePeriodSeconds") or 0),
        finalizers=tuple(meta.get("finalizers") or ()),
        domain=DomainFacts.parse((meta.get("annotations") or {}).get(ANNOTATION_DOMAIN)),
    )


TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"  # the node lifecycle controller's: heartbeats stopped


def node_lost(node: Mapping[str, Any] | None) -> bool:
    """The node stopped answering: the node lifecycle controller tainted it unreachable, or its Ready
    condition is Unknown (no heartbeat for the grace period). A pod there keeps the status it last had."""
    if node is None:
        return False
    if any(t.get("key") == TAINT_UNREACHABLE for t in (node.get("spec") or {}).get("taints") or []):
        return True
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "Unknown" for c in conditions)
