"""Where is the guest? Pure judgements of the facts migrate.py gathers after the job ends.

Success means: running on the destination, persistent there, gone from the source. After any
failure the guest must still run on the source. Anything else is VERIFICATION_FAILED with its reason.
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


def decide_success(p: Placement) -> str:
    """'' when the migration verifiably succeeded, else what is wrong."""
    problems = []
    if not p.destination_running:
        problems.append("not running on the destination" if p.destination_defined
                        else "absent from the destination")
    elif not p.destination_persistent:
        problems.append("running on the destination but not persistent there")
    if p.source_defined:
        problems.append("still defined on the source")
    return "; ".join(problems)


def decide_still_on_source(p: Placement) -> str:
    """'' when a failed or cancelled migration left the guest running on the source, else what is wrong."""
    if p.source_active:
        return "" if not p.destination_running else "running on both source and destination"
    if p.destination_running:
        return "not on the source but running on the destination"
    return "running neither on the source nor on the destination"
