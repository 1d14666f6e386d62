"""The launcher's exit codes and termination messages: how its pod tells the controllers what happened.

The termination message (written to the container's termination-log file) is one line
`<Reason>: <message>`; the VM controller copies Reason and message into the VM's status. Reasons are
CamelCase constants below; their exit codes let a controller decide without parsing text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    OK = 0                    # the domain left by migration, or was stopped on request
    INTERNAL = 1              # a bug or an unexpected libvirt error
    USAGE = 2                 # bad command line
    START_FAILED = 10         # the domain could not be defined or started
    CRASHED = 11              # the guest crashed or QEMU died
    STOPPED = 12              # the guest shut down or was destroyed by someone other than the launcher
    RECEIVE_TIMEOUT = 13      # receive mode: no domain arrived in time
    LIBVIRT_UNREACHABLE = 14  # the node's libvirt did not answer
    NOT_HELD = 15             # receive mode: the guest arrived after the stop request and was left running
    LEFTOVER_REFUSED = 16     # receive mode: libvirt refused to destroy a copy that never ran here


class Reason(enum.StrEnum):
    MIGRATED = "Migrated"                      # the domain left this node by live migration
    STOPPED_ON_REQUEST = "StoppedOnRequest"    # SIGTERM: the guest was shut down (or destroyed after a timeout)
    NOTHING_RECEIVED = "NothingReceived"       # receive mode, SIGTERM before any domain arrived
    START_FAILED = "DomainStartFailed"
    CRASHED = "GuestCrashed"
    STOPPED = "GuestStopped"
    VANISHED = "DomainVanished"                # the domain was undefined behind the launcher's back
    RECEIVE_TIMEOUT = "ReceiveTimeout"
    LIBVIRT_UNREACHABLE = "LibvirtUnreachable"
    ARRIVED_AFTER_STOP = "ArrivedAfterStop"    # receive mode: the guest ran here only after SIGTERM: not held
    LEFTOVER_REFUSED = "LeftoverRefused"       # receive mode: libvirt keeps a copy that never ran, refusing destroy
    INTERNAL = "InternalError"


EXIT_CODES = {
    Reason.MIGRATED: ExitCode.OK, Reason.STOPPED_ON_REQUEST: ExitCode.OK, Reason.NOTHING_RECEIVED: ExitCode.OK,
    Reason.START_FAILED: ExitCode.START_FAILED, Reason.CRASHED: ExitCode.CRASHED,
    Reason.STOPPED: ExitCode.STOPPED, Reason.VANISHED: ExitCode.STOPPED,
    Reason.RECEIVE_TIMEOUT: ExitCode.RECEIVE_TIMEOUT, Reason.LIBVIRT_UNREACHABLE: ExitCode.LIBVIRT_UNREACHABLE,
    Reason.ARRIVED_AFTER_STOP: ExitCode.NOT_HELD, Reason.LEFTOVER_REFUSED: ExitCode.LEFTOVER_REFUSED,
    Reason.INTERNAL: ExitCode.INTERNAL,
}


@dataclass(frozen=True)
class Outcome:
    """How the launcher ends."""

    reason: Reason
    message: str

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES[self.reason])

    def termination_message(self) -> str:
        return f"{self.reason.value}: {self.message}"
