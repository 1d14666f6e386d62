"""The migration agent's exit codes and what each means for the Migration: one table.

The agent (virtmigrate/agent, `virtmigrate-agent`) exits with one of these codes and writes the same
outcome into its JSON termination message; the migration controller reads the agent pod's exit code
(or, when the pod died without one of ours, an unknown code) and calls `phase_for_exit_code` to set
the Migration's status.phase and status.reason.

| code | name                       | phase     | reason                 | meaning                           |
|------|----------------------------|-----------|------------------------|-----------------------------------|
| 0    | SUCCEEDED                  | Succeeded | Migrated               | guest runs, persistent, on dest.  |
| 2    | INVALID_ARGUMENTS          | Failed    | InvalidAgentArguments  | bad flag or environment variable  |
| 10   | SOURCE_UNREACHABLE         | Failed    | SourceUnreachable      | cannot reach the source libvirt   |
| 11   | DESTINATION_UNREACHABLE    | Failed    | DestinationUnreachable | cannot reach the dest. libvirt    |
| 12   | DOMAIN_NOT_FOUND           | Failed    | DomainNotFound         | no such running domain on source  |
| 20   | MIGRATION_FAILED           | Failed    | MigrationFailed        | libvirt failed the migration job  |
| 21   | ABORTED_COMPLETION_TIMEOUT | Failed    | CompletionTimeout      | aborted: over the completion time |
| 22   | ABORTED_NO_PROGRESS        | Failed    | NoProgress             | aborted: no progress in time      |
| 23   | CANCELLED                  | Failed    | Cancelled              | SIGTERM/SIGINT; guest on source   |
| 24   | VERIFICATION_FAILED        | Failed    | VerificationFailed     | guest not where success requires  |
| else | (agent crashed or killed)  | Failed    | AgentFailed            | no outcome of ours; guest unknown |

In every Failed case but VERIFICATION_FAILED and an unknown code, the guest still runs on the source.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"


class ExitCode(enum.IntEnum):
    SUCCEEDED = 0                    # the guest runs on the destination, persistent there, gone from the source
    INVALID_ARGUMENTS = 2            # a flag or environment variable is missing or malformed
    SOURCE_UNREACHABLE = 10          # the source libvirt could not be reached
    DESTINATION_UNREACHABLE = 11     # the destination libvirt could not be reached
    DOMAIN_NOT_FOUND = 12            # the domain does not exist on the source or is not running
    MIGRATION_FAILED = 20            # libvirt failed the migration (its error is the message)
    ABORTED_COMPLETION_TIMEOUT = 21  # aborted because it did not complete within the time limit
    ABORTED_NO_PROGRESS = 22         # aborted because remaining data reached no new low in time
    CANCELLED = 23                   # cancelled by SIGTERM/SIGINT; the guest still runs on the source
    VERIFICATION_FAILED = 24         # the job ended but the guest is not where success requires


@dataclass(frozen=True)
class Outcome:
    """What an exit code means for the Migration."""

    phase: str   # "Succeeded" or "Failed"
    reason: str  # CamelCase, copied to status.reason


OUTCOMES: dict[ExitCode, Outcome] = {
    ExitCode.SUCCEEDED: Outcome(PHASE_SUCCEEDED, "Migrated"),
    ExitCode.INVALID_ARGUMENTS: Outcome(PHASE_FAILED, "InvalidAgentArguments"),
    ExitCode.SOURCE_UNREACHABLE: Outcome(PHASE_FAILED, "SourceUnreachable"),
    ExitCode.DESTINATION_UNREACHABLE: Outcome(PHASE_FAILED, "DestinationUnreachable"),
    ExitCode.DOMAIN_NOT_FOUND: Outcome(PHASE_FAILED, "DomainNotFound"),
    ExitCode.MIGRATION_FAILED: Outcome(PHASE_FAILED, "MigrationFailed"),
    ExitCode.ABORTED_COMPLETION_TIMEOUT: Outcome(PHASE_FAILED, "CompletionTimeout"),
    ExitCode.ABORTED_NO_PROGRESS: Outcome(PHASE_FAILED, "NoProgress"),
    ExitCode.CANCELLED: Outcome(PHASE_FAILED, "Cancelled"),
    ExitCode.VERIFICATION_FAILED: Outcome(PHASE_FAILED, "VerificationFailed"),
}

UNKNOWN_OUTCOME = Outcome(PHASE_FAILED, "AgentFailed")  # the agent died without one of our codes


def phase_for_exit_code(code: int) -> Outcome:
    """The Migration phase and reason for an agent exit code; unknown codes (crash, OOM kill) fail it."""
    try:
        return OUTCOMES[ExitCode(code)]
    except ValueError:
        return UNKNOWN_OUTCOME
