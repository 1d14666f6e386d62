"""Where is the guest? Pure judgements of the facts migrate.py gathers after the job ends.

Success means: running on the destination, persistent there, gone from the source. After any
failure the guest must still run on the source. Anything else is VERIFICATION_FAILED with its reason.
One repair is the agent's own: when the job's last step never ran on the source (its libvirtd died at the
switch-over) and the guest runs, persistent, on the destination, the stopped copy the source kept is undefined,
as libvirt's VIR_MIGRATE_UNDEFINE_SOURCE would have done (`stale_source_copy`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    source_defined: bool         # the source still has the domain (any state)
    source_active: bool          # ... and it runs (or is paused) there
    destination_defined: bool
    destination_running: bool    # state RUNNING on the destination
    destination_persistent: bool
    source_reachable: bool = True  # False: the source's libvirt did not answer (nothing is known of it)


def stale_source_copy(p: Placement) -> bool:
    """The guest runs, persistent, on the destination, and the source keeps a stopped definition of it: what a
    migration whose last step (the source's confirm: undefine) never ran leaves. Undefining it loses nothing."""
    return (p.source_reachable and p.source_defined and not p.source_active and p.destination_running
            and p.destination_persistent)


def decide_success(p: Placement) -> str:
    """'' when the migration verifiably succeeded, else what is wrong."""
    problems = []
    if not p.destination_running:
        problems.append("not running on the destination" if p.destination_defined
                        else "absent from the destination")
    elif not p.destination_persistent:
        problems.append("running on the destination but not persistent there")
    if not p.source_reachable:
        problems.append("of unknown state on the source (its libvirt did not answer)")
    elif p.source_defined:
        problems.append("still defined on the source")
    return "; ".join(problems)


def decide_still_on_source(p: Placement) -> str:
    """'' when a failed or cancelled migration left the guest running on the source, else what is wrong."""
    if not p.source_reachable:
        return "of unknown state on the source (its libvirt did not answer)"
    if p.source_active:
        return "" if not p.destination_running else "running on both source and destination"
    if p.destination_running:
        return "not on the source but running on the destination"
    return "running neither on the source nor on the destination"
