"""Which pod changes can change a Migration's next step: the pod handler's filter (client-go's UpdateFunc
predicates), so that a change no decision reads queues nothing (pure).

Fed by: migration/controller.py's pod update handler, with the views (podstate.PodView) of the pod before and
after the change and a `Glance` at each Migration the pod concerns, as the caches show them.
Consumed by: the same handler, which queues a Migration only when `pod_update_matters` says so. Adds and
deletes of pods, and every change of a Migration or its VM, always queue it.

Why a skipped change is never lost: the next step depends on the pod only through what the phase machine
(migration/decide.py) reads of it, and every sync reads the caches as they are then. A change is skipped only
when the step it would lead to is the one already decided for the Migration's state — and a later change of
that state (of the Migration itself, or of the pod the rule looked at: the agent) has events of its own, each
followed by a sync that sees this change too. The Migration glanced at may lag behind its own newest event,
never the other way round: the rule for an older phase is then applied, and the newer phase's own event
queues a sync anyway.

    launcher   (target, source, witness): its node, scheduling, deletion, end and report (DomainFacts);
               not its readiness, start time or non-terminal phase, nor when its deletion was asked or forced
    agent      everything but its readiness and start time
    other      (abort pods) every field
Two phases read less: at TargetReady with an agent pod that has not started, only the agent's start matters;
in cleanup (terminal, finalizer held), a launcher's deletion only turns "delete it" into "wait for it to go".
Adds: the target launcher a Migration just created (Scheduling) or its agent (TargetReady), unbound or not
started, lead to no step; every other add does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from virtmigrate.api.constants import ROLE_AGENT, ROLE_LAUNCHER, MigrationPhase
from virtmigrate.controller.podstate import PodView

P = MigrationPhase
_TERMINAL = frozenset({P.SUCCEEDED.value, P.FAILED.value})


@dataclass(frozen=True, slots=True)
class Glance:
    """What the handler sees of one Migration in the cache."""

    phase: str | None                 # status.phase
    deleting: bool = False            # metadata.deletionTimestamp is set (the cancel regime)
    has_finalizer: bool = True        # our finalizer is on (without it the next step adds it)
    agent: PodView | None = None      # its agent pod (status.agentPod) as cached; None: none, or not named yet
    target_pod: str = ""              # status.targetPod ("" until admitted)
    agent_pod: str = ""               # status.agentPod ("" until admitted)


def _launcher_facts(v: PodView) -> tuple[object, ...]:
    """What the phase machine reads of a launcher pod (the target, a source, a witness)."""
    return (v.name, v.uid, v.node, v.deleting, v.unschedulable, v.terminated, v.exit_code, v.termination_message,
            v.finalizers, v.domain)


def _agent_facts(v: PodView) -> tuple[object, ...]:
    """What the phase machine reads of an agent pod: all but its readiness and start time."""
    return (v.name, v.uid, v.node, v.phase, v.deleting, v.unschedulable, v.exit_code, v.termination_message,
            v.finished_at, v.deleted_at, v.deletion_grace_s, v.finalizers, v.domain)


def started(agent: PodView) -> bool:
    """The agent pod left Pending (or ended): at TargetReady this, and only this, moves the Migration on."""
    return agent.phase != "Pending" or agent.terminated


def pod_update_matters(m: Glance | None, role: str, old: PodView | None, new: PodView | None) -> bool:
    """May the change of a pod from `old` to `new` (views of the same pod key) change the next step of
    Migration `m` (None: not in the cache)? `role`: the pod's role label. True when in doubt."""
    if m is None or new is None:
        return True
    if old is None:
        return _add_matters(m, role, new)
    if role == ROLE_LAUNCHER:
        before, after = _launcher_facts(old), _launcher_facts(new)
        if before == after:
            return False
        if m.deleting or not m.has_finalizer:
            return True
        if m.phase == P.TARGET_READY.value and m.agent is not None and not started(m.agent):
            return False  # the agent exists and has not started: the launchers are read once it does
        # Cleanup: a pod being deleted is waited for; its disappearance queues the next step.
        return not (m.phase in _TERMINAL and new.deleting and not old.deleting
                    and _launcher_facts(dataclasses.replace(new, deleting=False)) == before)
    if role == ROLE_AGENT:
        if _agent_facts(old) == _agent_facts(new):
            return False
        if m.phase == P.TARGET_READY.value and not m.deleting and m.has_finalizer:
            return started(old) != started(new)
        return True
    return old != new


def _add_matters(m: Glance, role: str, new: PodView) -> bool:
    """A pod the cache shows for the first time (not in the initial list): the pod this Migration has just
    created, as it was created, leads to no step — the creating sync set the timeout that the next sync would
    have set (decide.py: CREATE_TARGET_POD, CREATE_AGENT_POD); its binding, start or end queues the next one."""
    if m.deleting or not m.has_finalizer or new.deleting or new.terminated:
        return True
    if role == ROLE_LAUNCHER and m.phase == P.SCHEDULING.value and new.name == m.target_pod:
        return bool(new.node or new.unschedulable)
    if role == ROLE_AGENT and m.phase == P.TARGET_READY.value and new.name == m.agent_pod:
        return started(new)
    return True
