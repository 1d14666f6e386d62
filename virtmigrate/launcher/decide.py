"""Pure decisions of the launcher: given what it observed of its domain, hold on, shut down, or exit why.

Fed by holder.py with an Observation built from libvirt's lifecycle events and a state poll; no I/O,
no clock. libvirt's numeric constants are repeated here (checked against the binding in the unit
tests) so the decisions can be tested without libvirt.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from virtmigrate.launcher.exitcodes import Outcome, Reason
from virtmigrate.launcher.readiness import CRASHED as CRASHED  # virDomainState, and the probe's rule:
from virtmigrate.launcher.readiness import PAUSED as PAUSED  # re-exported from readiness.py
from virtmigrate.launcher.readiness import RUNNING as RUNNING
from virtmigrate.launcher.readiness import SHUTDOWN as SHUTDOWN
from virtmigrate.launcher.readiness import SHUTOFF as SHUTOFF
from virtmigrate.launcher.readiness import is_ready as is_ready

# virDomainShutoffReason
SHUTOFF_SHUTDOWN, SHUTOFF_DESTROYED, SHUTOFF_CRASHED, SHUTOFF_MIGRATED, SHUTOFF_FAILED = 1, 2, 3, 4, 6
# virDomainEventType and virDomainEventStoppedDetailType
EVENT_UNDEFINED, EVENT_STARTED, EVENT_STOPPED, EVENT_CRASHED = 1, 2, 5, 8
STOPPED_SHUTDOWN, STOPPED_DESTROYED, STOPPED_CRASHED, STOPPED_MIGRATED, STOPPED_FAILED = 0, 1, 2, 3, 5
PAUSED_MIGRATION = 2          # virDomainPausedReason: paused for an incoming (pre-copy) migration
PAUSED_STARTING_UP = 11       # virDomainPausedReason: its QEMU never got past start-up
PAUSED_POSTCOPY = (12, 13)    # virDomainPausedReason: post-copy, post-copy failed (the guest's pages are split)
LEFTOVER_JOB_WAIT_S = 10.0    # asked to stop, a paused incoming copy's job is waited for this long (pod grace: 60 s)


class Action(enum.Enum):
    HOLD = "hold"          # keep holding the domain
    SHUT_DOWN = "shutdown"  # shut the guest down (SIGTERM), then exit with STOPPED_ON_REQUEST
    EXIT = "exit"          # exit with the outcome
    WAIT = "wait"          # receive mode: the domain has not arrived (or not started running) yet


@dataclass(frozen=True)
class Decision:
    action: Action
    outcome: Outcome | None = None


class Leftover(enum.Enum):
    NONE = "none"
    DESTROY = "destroy"    # a paused, non-persistent copy with no job: an incoming migration that never finished
    WAIT = "wait"          # a job still runs on it: its end decides


@dataclass(frozen=True)
class Observation:
    """What the launcher knows of its domain at one step."""

    name: str
    present: bool                               # the domain exists on this node
    state: int = 0                              # virDomainState when present
    reason: int = 0                             # the state's reason
    events: Sequence[tuple[int, int]] = ()      # lifecycle (event, detail) pairs since the last step
    migrating_out: bool = False                 # an outgoing migration job runs (or ran at the last step)
    sigterm: bool = False                       # the pod is being deleted
    persistent: bool = False                    # the domain is defined persistently
    job: bool = False                           # a libvirt job runs on the domain (in receive mode: incoming)


HOLD = Decision(Action.HOLD)


def _exit(reason: Reason, message: str) -> Decision:
    return Decision(Action.EXIT, Outcome(reason, message))


def decide_hold(o: Observation) -> Decision:
    """While holding a running domain: what happened to it, and what to do."""
    for event, detail in o.events:
        if event == EVENT_STOPPED and detail == STOPPED_MIGRATED:
            return _exit(Reason.MIGRATED, f"domain {o.name} left this node by live migration")
    for event, detail in o.events:
        if event == EVENT_CRASHED or (event == EVENT_STOPPED and detail in (STOPPED_CRASHED, STOPPED_FAILED)):
            return _exit(Reason.CRASHED, f"domain {o.name} crashed or its QEMU process died")
        if event == EVENT_STOPPED and detail == STOPPED_SHUTDOWN:
            return _exit(Reason.STOPPED, f"the guest of {o.name} shut itself down")
        if event == EVENT_STOPPED and detail == STOPPED_DESTROYED:
            return _exit(Reason.STOPPED, f"domain {o.name} was destroyed by someone other than its launcher")
    if not o.present:
        if o.migrating_out:
            return _exit(Reason.MIGRATED, f"domain {o.name} left this node during a live migration")
        return _exit(Reason.VANISHED, f"domain {o.name} was undefined behind the launcher's back")
    if o.state == SHUTOFF:
        return decide_shutoff(o.name, o.reason)
    if o.state == CRASHED:
        return _exit(Reason.CRASHED, f"domain {o.name} crashed")
    if o.sigterm and not o.migrating_out:
        return Decision(Action.SHUT_DOWN)
    return HOLD  # running, paused, or SIGTERM during an outgoing migration: wait for its outcome


def decide_shutoff(name: str, reason: int) -> Decision:
    if reason == SHUTOFF_MIGRATED:
        return _exit(Reason.MIGRATED, f"domain {name} left this node by live migration")
    if reason in (SHUTOFF_CRASHED, SHUTOFF_FAILED):
        return _exit(Reason.CRASHED, f"domain {name} crashed or its QEMU process died")
    if reason == SHUTOFF_SHUTDOWN:
        return _exit(Reason.STOPPED, f"the guest of {name} shut itself down")
    return _exit(Reason.STOPPED, f"domain {name} stopped (libvirt shutoff reason {reason})")


def decide_receive(o: Observation, *, waited_s: float, timeout_s: float) -> Decision:
    """Receive mode before the domain runs here: HOLD once it arrived and runs (start holding it), WAIT
    while it has not, EXIT on SIGTERM or after the timeout.

    A guest seen running only once the stop was asked for is not held: holding it would shut it down at
    once (decide_hold), and it may well be the only copy — a migration that completed despite its cancel,
    or a guest another launcher started on this node while this one, a probe, was being deleted. It is left
    running; the exit's reason (not one that proves the guest gone) has the controllers ask the node again."""
    if o.present and o.state == RUNNING:
        if o.sigterm:
            return _exit(Reason.ARRIVED_AFTER_STOP, f"domain {o.name} runs here, but it arrived (or was started) "
                         "after this launcher was asked to stop: left running, not held")
        return HOLD
    if o.sigterm:
        return _exit(Reason.NOTHING_RECEIVED, f"stopped on request before domain {o.name} arrived")
    if waited_s >= timeout_s:
        return _exit(Reason.RECEIVE_TIMEOUT, f"no domain {o.name} arrived within {timeout_s:.0f}s")
    return Decision(Action.WAIT)


def receive_leftover(o: Observation, *, stopping_for_s: float = 0.0) -> Leftover:
    """Receive mode, asked to stop before the guest ran here: what of the domain on this node is ours to remove.
    libvirt's rule for what a failed migration leaves: only a paused, non-persistent copy is destroyed (e.g.
    the incoming domain a restarted libvirtd kept when its daemon died mid-migration); one whose job still
    runs is waited for, but not for ever: a restarted daemon can keep an incoming job that never ends (chaos
    seed 11 round 22). Paused for an incoming pre-copy migration, the copy here is never the only one (the
    source keeps the guest until the switch-over completes, and a completed one resumes the guest here), so
    after LEFTOVER_JOB_WAIT_S it goes too; a post-copy copy is never touched. Nothing else (a running or
    persistent domain) is ever removed."""
    if not o.present or o.state != PAUSED or o.persistent:
        return Leftover.NONE
    if not o.job:  # a post-copy copy may be the only one (the guest's pages are split): an admin recovers it
        return Leftover.NONE if o.reason in PAUSED_POSTCOPY else Leftover.DESTROY
    if o.reason == PAUSED_MIGRATION and stopping_for_s >= LEFTOVER_JOB_WAIT_S:
        return Leftover.DESTROY
    return Leftover.WAIT


def leftover_refused(name: str, reason: int, error: str) -> Outcome:
    """receive_leftover said DESTROY, and libvirt refused (its daemon answers, the destroy does not happen).
    Seen with libvirt 9.0: a daemon killed while it started an incoming domain's QEMU restarts with a record
    of it — paused, `starting up`, QEMU pid 0, an incoming job owned by no one — that it neither reconnects
    nor destroys ("cannot acquire state change lock"), restart after restart. Such a copy never ran: the
    guest does not run here; the record stays until the node's admin removes it."""
    how = "starting up: its QEMU never ran" if reason == PAUSED_STARTING_UP else f"paused, reason {reason}"
    return Outcome(Reason.LEFTOVER_REFUSED,
                   f"libvirt on this node refused to destroy the copy of domain {name} an incoming migration left "
                   f"({how}): {error}. The guest does not run here, but libvirt keeps the record, and a later "
                   f"migration or start of {name} on this node fails while it does. To clear it: stop libvirtd on "
                   f"this node, remove the domain's status file (/run/libvirt/qemu/{name}.xml), start libvirtd")


def migrated_definition_left(o: Observation) -> bool:
    """Holding, the guest left by live migration and the domain is still defined here, stopped, with no job:
    the stopped copy a migration keeps when its last step (the source's confirm, which undefines it with
    VIR_MIGRATE_UNDEFINE_SOURCE before the job ends) never ran — its libvirtd died at the switch-over, and the
    agent that would have undefined it (agent/verify.py) died too. libvirt itself says the guest migrated (the
    shutoff reason `migrated`, or the stopped-migrated event this launcher received), so undefining it
    finishes the job's own last step and loses nothing; left, a `virsh start` on this node would run a second
    copy. A stop of any other kind, or one whose job still runs (libvirt is confirming and undefines it
    itself), is left alone."""
    said_migrated = o.reason == SHUTOFF_MIGRATED or (EVENT_STOPPED, STOPPED_MIGRATED) in o.events
    return o.present and o.state == SHUTOFF and said_migrated and o.persistent and not o.job
