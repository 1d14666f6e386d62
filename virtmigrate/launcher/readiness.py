"""The launcher's readiness rule, pure, and the libvirt domain states it reads.

Kept apart from decide.py so the readiness probe (probe.py, a process the node runner starts every probe
period) imports nothing it does not need: no dataclasses, no exit codes. decide.py re-exports both.
"""

from __future__ import annotations

# virDomainState (checked against the binding in the unit tests)
RUNNING, PAUSED, SHUTDOWN, SHUTOFF, CRASHED = 1, 3, 4, 5, 6


def is_ready(mode: str, *, reachable: bool, present: bool, state: int) -> bool:
    """The readiness probe's answer: start mode is ready while the domain runs; receive mode while the
    node's libvirt answers and the domain has not failed (absent, arriving, or running)."""
    if not reachable:
        return False
    if mode == "start":
        return present and state == RUNNING
    return not present or state in (RUNNING, PAUSED)
