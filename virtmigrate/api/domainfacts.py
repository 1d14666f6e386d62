"""What a node's libvirt says about one guest: the launcher's report on its pod, and how to read it.

Written by: the launcher (virtmigrate/launcher/report.py) into its own pod's annotation
`virtmigrate.kubevirt.io/domain`, each time what it sees changes (lifecycle and job events, and a state
poll), and every few seconds while a migration job runs. Read by: the controllers, from their pod caches
(virtmigrate/controller/podstate.py), never from libvirt directly: this is the only way they learn where a
guest runs. One typed contract for both sides, tested on both sides.

The annotation is compact JSON, e.g.
    {"reachable":true,"present":true,"state":"running","persistent":true,"job":"none",
     "uuid":"…","mode":"hold","seq":7,"observed":"2026-11-28T14:00:00.123Z"}
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass

ANNOTATION_DOMAIN = "virtmigrate.kubevirt.io/domain"

# Launcher termination reasons (virtmigrate.launcher.exitcodes.Reason) that prove the domain is gone from
# the node: the launcher exits with these only once libvirt said so. Any other end (the launcher killed,
# libvirt unreachable, an internal error) leaves the domain's fate unknown: QEMU is libvirtd's child.
# LeftoverRefused: libvirt keeps a paused incoming copy that never ran (decide.receive_leftover would have it
# destroyed) and refuses to destroy it: no guest runs there, but the record stays (LEFTOVER_REFUSED_REASON).
LEFTOVER_REFUSED_REASON = "LeftoverRefused"
LAUNCHER_GONE_REASONS = frozenset({"Migrated", "StoppedOnRequest", "NothingReceived", "DomainStartFailed",
                                   "GuestCrashed", "GuestStopped", "DomainVanished", "ReceiveTimeout",
                                   LEFTOVER_REFUSED_REASON})


def parse_termination(message: str, exit_code: int | None) -> tuple[str, str]:
    """A launcher's `<Reason>: <message>` termination message as (reason, message)."""
    text = message.strip()
    head, sep, rest = text.partition(": ")
    if sep and head.isalnum() and head[:1].isupper():
        return head, rest.strip()
    if text:
        return "LauncherFailed", text
    return "LauncherFailed", f"the launcher exited with code {exit_code}"


class DomainState(enum.StrEnum):
    ABSENT = "absent"        # no domain of that name on the node
    RUNNING = "running"
    PAUSED = "paused"        # e.g. the source at switch-over, or an incoming domain
    SHUTOFF = "shutoff"      # defined but not running
    CRASHED = "crashed"
    OTHER = "other"          # blocked, shutting down, pmsuspended, unknown


class Job(enum.StrEnum):
    NONE = "none"            # no libvirt job on the domain
    OUT = "out"              # an outgoing migration job runs (this node is the source)
    IN = "in"                # an incoming migration is in progress (this node is the target)
    OTHER = "other"


class LauncherMode(enum.StrEnum):
    WAITING = "waiting"      # receive mode: connected to libvirt, the guest has not arrived yet
    HOLD = "hold"            # the guest runs here and the launcher holds it
    EXITING = "exiting"      # the launcher is about to exit (its termination message says why)


@dataclass(frozen=True)
class DomainFacts:
    """One observation of the guest's domain by the launcher on its node."""

    reachable: bool                 # the node's libvirt answered this observation
    present: bool = False           # the domain exists on the node
    state: DomainState = DomainState.ABSENT
    persistent: bool = False        # defined persistently (a leftover of a failed migration is not)
    job: Job = Job.NONE
    uuid: str = ""
    mode: LauncherMode = LauncherMode.WAITING
    seq: int = 0                    # increases with every report of one launcher process
    observed: str = ""              # RFC 3339 wall time of the observation

    @property
    def running(self) -> bool:
        return self.reachable and self.present and self.state == DomainState.RUNNING

    @property
    def paused(self) -> bool:
        return self.reachable and self.present and self.state == DomainState.PAUSED

    def same_observation(self, other: DomainFacts | None) -> bool:
        """Equal but for `seq` and `observed`: nothing worth reporting again."""
        if other is None:
            return False
        a, b = asdict(self), asdict(other)
        for k in ("seq", "observed"):
            a.pop(k), b.pop(k)
        return a == b

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def parse(cls, text: str | None) -> DomainFacts | None:
        """The facts in an annotation value; None when absent or not ours (never raises)."""
        if not text:
            return None
        try:
            d = json.loads(text)
            return cls(reachable=bool(d["reachable"]), present=bool(d.get("present", False)),
                       state=DomainState(d.get("state", "absent")), persistent=bool(d.get("persistent", False)),
                       job=Job(d.get("job", "none")), uuid=str(d.get("uuid", "")),
                       mode=LauncherMode(d.get("mode", "waiting")), seq=int(d.get("seq", 0)),
                       observed=str(d.get("observed", "")))
        except (ValueError, KeyError, TypeError):
            return None
