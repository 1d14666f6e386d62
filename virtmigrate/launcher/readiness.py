"""The launcher's readiness rule, pure, and the libvirt domain states it reads.

Kept apart from decide.py so the readiness probe (probe.py, a process the node runner starts every probe
period) imports nothing it does not need: no dataclasses, no exit codes. decide.py re-exports both.
"""

from __future__ import annotations

# virDomainState (checked against the binding in the unit tests)
RUNNING, PAUSED, SHUTDOWN, SHUTOFF, CRASHED = 1, 3, 4, 5, 6


def is_ready(mode: str, *, reachable: bool, present: bool, state: int) -> bool:
    """The readiness probe's answer, the same in both modes: ready while the guest runs on this node. A
    receive-mode launcher is not ready merely because it waits: only once the guest has arrived and runs.
    (That a target waits to receive is in its domain report, virtmigrate.api.domainfacts.)"""
    return reachable and present and state == RUNNING
