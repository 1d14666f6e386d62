"""Literal launcher reports and pod views for the Migration phase machine's tests (no logic of ours).

What each node's launcher says (virtmigrate.api.domainfacts) is spelled out here once, so a test reads
as "the source runs the guest, the target waits" rather than as a dictionary. `obs` builds an `Observed`
the way migration/observe.py does: the sides' `Where` (and whether a side's launcher is silenced) come
from the pods and witnesses through `locate.read_sides`, unless a test gives them.
"""

from __future__ import annotations

from virtmigrate.api.constants import MigrationPhase
from virtmigrate.api.domainfacts import DomainFacts, DomainState, Job, LauncherMode
from virtmigrate.controller.migration.decide import Observed, VMState
from virtmigrate.controller.migration.locate import read_sides
from virtmigrate.controller.podstate import PodView

UID = "mig-uid"

# --- what a launcher reports of its node -----------------------------------------------------------
RUNS = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True,
                   mode=LauncherMode.HOLD)                                  # the guest runs here
WAITS = DomainFacts(reachable=True, mode=LauncherMode.WAITING)              # a target, nothing arrived yet
NONE_HERE = DomainFacts(reachable=True, mode=LauncherMode.EXITING)          # libvirt says: no such domain
PAUSED_COPY = DomainFacts(reachable=True, present=True, state=DomainState.PAUSED,
                          mode=LauncherMode.HOLD)                           # a paused leftover, no job
PAUSED_PERSISTENT = DomainFacts(reachable=True, present=True, state=DomainState.PAUSED, persistent=True,
                                mode=LauncherMode.HOLD)                     # a paused copy, defined persistently
JOB_OUT = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, job=Job.OUT,
                      mode=LauncherMode.HOLD)                               # the source, a job running
JOB_IN = DomainFacts(reachable=True, present=True, state=DomainState.PAUSED, job=Job.IN,
                     mode=LauncherMode.WAITING)                             # the target, receiving
UNREACHABLE = DomainFacts(reachable=False, mode=LauncherMode.HOLD)          # the node's libvirt did not answer

# --- the VM ------------------------------------------------------------------------------------------
VM_RUNNING = VMState(running=True, node="node0", launcher_pod="virt-launcher-testvm-aaaaa")
VM_OURS = VMState(running=True, node="node0", launcher_pod="virt-launcher-testvm-aaaaa", migration_uid=UID)
VM_RECORDED = VMState(running=True, node="node1", launcher_pod="virt-launcher-testvm-bbbbb", migration_uid=UID,
                      migration_completed=True)

# --- launcher pods -------------------------------------------------------------------------------------
SRC_NAME, TGT_NAME, AGENT_NAME = "virt-launcher-testvm-aaaaa", "virt-launcher-testvm-bbbbb", "virt-migration-m-ccccc"


def src(facts: DomainFacts | None = RUNS, **kw: object) -> PodView:
    base: dict[str, object] = {"name": SRC_NAME, "node": "node0", "phase": "Running", "domain": facts}
    base.update(kw)
    return PodView(**base)  # type: ignore[arg-type]


def tgt(facts: DomainFacts | None = WAITS, **kw: object) -> PodView:
    base: dict[str, object] = {"name": TGT_NAME, "node": "node1", "phase": "Running", "domain": facts}
    base.update(kw)
    return PodView(**base)  # type: ignore[arg-type]


def exited(reason: str, code: int = 0) -> dict[str, object]:
    """The fields of a launcher pod whose launcher exited with `reason` (launcher/exitcodes.Reason)."""
    return {"phase": "Succeeded" if code == 0 else "Failed", "exit_code": code,
            "termination_message": f"{reason}: domain ns_testvm"}


SRC = src()                                          # runs the guest
SRC_LEFT = src(NONE_HERE, **exited("Migrated"))      # its launcher exited: the guest left by migration
TGT_PENDING = PodView(name=TGT_NAME)                 # not scheduled yet
TGT_BOUND = PodView(name=TGT_NAME, node="node1", phase="Running")  # bound, no report yet
TGT_WAITING = tgt(WAITS)                             # reports that it waits for the guest
TGT_RUNS = tgt(RUNS, ready=True)                     # the guest arrived and runs


# --- agent pods ------------------------------------------------------------------------------------------
AGENT_RUN = PodView(name=AGENT_NAME, node="node0", phase="Running")


def agent_exited(code: int, message: str = "", **kw: object) -> PodView:
    base: dict[str, object] = {"name": AGENT_NAME, "node": "node0", "phase": "Succeeded" if code == 0 else "Failed",
                               "exit_code": code, "termination_message": message}
    base.update(kw)
    return PodView(**base)  # type: ignore[arg-type]


def obs(**kw: object) -> Observed:
    """An Observed with the sides' locations read from the pods, as migration/observe.py reads them."""
    base: dict[str, object] = {"uid": UID, "vm_name": "testvm", "phase": None, "has_finalizer": True,
                               "vm": VM_RUNNING, "source_node": "node0", "target_node": "node1"}
    base.update(kw)
    phase, entered = base.get("phase"), base.get("entered") or frozenset()
    sides = read_sides(base.get("source_pod"), base.get("target_pod"),  # type: ignore[arg-type]
                       source_witness=base.get("source_witness"),  # type: ignore[arg-type]
                       target_witness=base.get("target_witness"),  # type: ignore[arg-type]
                       target_created="TargetReady" in entered  # type: ignore[operator]
                       or phase in (MigrationPhase.TARGET_READY, MigrationPhase.RUNNING))
    base.setdefault("source_where", sides.source)
    base.setdefault("target_where", sides.target)
    base.setdefault("source_mute", sides.source_mute)
    base.setdefault("target_mute", sides.target_mute)
    return Observed(**base)  # type: ignore[arg-type]
