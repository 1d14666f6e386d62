"""Where a guest runs, read from its launchers' reports, and what an agent's outcome claims (pure).

Fed by: migration/observe.py, with the source and target launcher pods' views (podstate.PodView, whose
`domain` is the launcher's report, virtmigrate.api.domainfacts). Consumed by: migration/decide.py, which
turns an agent outcome into Succeeded or Failed only when the nodes' facts agree, and otherwise waits,
bounded, for them to settle. Nothing here infers a location from an exit code or a phase.

    guest_on(pod)         -> Where      what one node's launcher says of the guest there
    locate(source, target) -> Location  where the guest is, from both
    claim_of(exit code)   -> Claim      where the agent says it left the guest (to confirm, never to trust)
    silenced(pod)         -> bool       the side's launcher can no longer report (a witness must speak for it)
    side_where(pod, witness, ...) -> Where  what a side says: its launcher's report, or its witness's
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from virtmigrate.api.domainfacts import LAUNCHER_GONE_REASONS, DomainState, Job, parse_termination
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.controller.podstate import PodView


class Where(enum.StrEnum):
    RUNNING = "running"        # the node's libvirt runs the guest (not paused, no job)
    PAUSED = "paused"          # present and paused, no job
    ABSENT = "absent"          # proven not there (libvirt said so, or the launcher exited because of it)
    MIGRATING = "migrating"    # a migration job runs on the domain there (either direction)
    UNKNOWN = "unknown"        # no report yet, libvirt unreachable, or the launcher died without a word


class Location(enum.StrEnum):
    TARGET = "target"          # runs on the target (the source has none, or a paused leftover)
    SOURCE = "source"          # runs on the source (the target has none, or a paused leftover)
    BOTH = "both"              # runs on both nodes: never resolved automatically
    NEITHER = "neither"        # proven absent from both: the guest is lost
    UNSETTLED = "unsettled"    # a job still runs, or a side is unknown: wait (bounded)


class Claim(enum.StrEnum):
    TARGET = "target"          # the agent verified the guest on the destination
    SOURCE = "source"          # the agent stopped or failed the job with the guest on the source
    NONE = "none"              # no claim: killed, crashed, verification failed, domain not found


_SOURCE_CLAIMS = frozenset({ExitCode.INVALID_ARGUMENTS, ExitCode.SOURCE_UNREACHABLE,
                            ExitCode.DESTINATION_UNREACHABLE, ExitCode.MIGRATION_FAILED,
                            ExitCode.ABORTED_COMPLETION_TIMEOUT, ExitCode.ABORTED_NO_PROGRESS,
                            ExitCode.CANCELLED})


def claim_of(code: int | None) -> Claim:
    if code == ExitCode.SUCCEEDED:
        return Claim.TARGET
    if code is not None and code in _SOURCE_CLAIMS:
        return Claim.SOURCE
    return Claim.NONE


def guest_on(pod: PodView | None, *, missing: Where = Where.UNKNOWN) -> Where:
    """What the launcher pod `pod` says of the guest on its node. `missing`: the answer when there is no
    pod (ABSENT for a target that was never created, UNKNOWN for a source pod that vanished)."""
    if pod is None:
        return missing
    if pod.terminated:
        reason, _ = parse_termination(pod.termination_message, pod.exit_code)
        return Where.ABSENT if reason in LAUNCHER_GONE_REASONS else Where.UNKNOWN
    f = pod.domain
    if f is None or not f.reachable:
        return Where.UNKNOWN
    if not f.present:
        return Where.ABSENT
    if f.job != Job.NONE:
        return Where.MIGRATING
    if f.state == DomainState.RUNNING:
        return Where.RUNNING
    if f.state == DomainState.PAUSED:
        return Where.PAUSED
    if f.state in (DomainState.SHUTOFF, DomainState.CRASHED):
        return Where.ABSENT  # defined but not running: no guest there
    return Where.UNKNOWN


def silenced(pod: PodView | None) -> bool:
    """The launcher of `pod` will never report again without having proved the guest gone: its pod vanished,
    or its process ended for another reason (killed, libvirt unreachable). Only a new launcher on that node,
    a witness, can say what its libvirt holds."""
    return pod is None or (pod.terminated and guest_on(pod) == Where.UNKNOWN)


def side_where(pod: PodView | None, witness: PodView | None, *, missing: Where, mute: bool) -> Where:
    """What one side of a migration says of the guest: its launcher's report, or — when the launcher is
    silenced (`mute`) — its witness's (UNKNOWN until the witness reports)."""
    if not mute:
        return guest_on(pod, missing=missing)
    return guest_on(witness, missing=Where.UNKNOWN)


@dataclass(frozen=True)
class Sides:
    """What each side of a migration says of the guest, and whether its launcher is silenced."""

    source: Where
    target: Where
    source_mute: bool = False
    target_mute: bool = False


def read_sides(source_pod: PodView | None, target_pod: PodView | None, *, source_witness: PodView | None = None,
               target_witness: PodView | None = None, target_created: bool = False) -> Sides:
    """Both sides, as the phase machine reads them. A target pod that was never created proves the guest
    absent there; once it was (`target_created`), its disappearance proves nothing."""
    s_mute = silenced(source_pod)
    t_mute = target_created and silenced(target_pod)
    return Sides(source=side_where(source_pod, source_witness, missing=Where.UNKNOWN, mute=s_mute),
                 target=side_where(target_pod, target_witness, missing=Where.ABSENT, mute=t_mute),
                 source_mute=s_mute, target_mute=t_mute)


def locate(source: Where, target: Where) -> Location:
    """Where the guest is, given what each side's launcher says."""
    if source == Where.RUNNING and target == Where.RUNNING:
        return Location.BOTH
    if target == Where.RUNNING and source in (Where.ABSENT, Where.PAUSED):
        return Location.TARGET
    if source == Where.RUNNING and target in (Where.ABSENT, Where.PAUSED):
        return Location.SOURCE
    if source == Where.ABSENT and target == Where.ABSENT:
        return Location.NEITHER
    return Location.UNSETTLED


def confirms(claim: Claim, source: Where, target: Where) -> Location | None:
    """The location an agent's claim and one node's facts establish together, or None. The claim names the
    side; that side's launcher must report the guest running, and the other side must not: a node whose
    libvirt is down (UNKNOWN) cannot run the guest too, since libvirt runs a migrated guest on one side only
    once the source has stopped it — and the side that runs it said so after the job ended."""
    if claim == Claim.TARGET and target == Where.RUNNING and source != Where.RUNNING:
        return Location.TARGET
    if claim == Claim.SOURCE and source == Where.RUNNING and target != Where.RUNNING:
        return Location.SOURCE
    return None


def leftover(location: Location, source: Where, target: Where) -> str:
    """"source"/"target" when the side that lost holds a paused copy (libvirt's leftover), else ""."""
    if location == Location.TARGET and source == Where.PAUSED:
        return "source"
    if location == Location.SOURCE and target == Where.PAUSED:
        return "target"
    return ""
