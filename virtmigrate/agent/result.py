"""The agent's result, as the migration built it; written through the shared contract
(virtmigrate.api.agentresult) to the termination-message path, where the controller reads it back.

Built by migrate.py from the migration's outcome; written by cmd/agent.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from virtmigrate.agent.jobstats import Mode
from virtmigrate.api.agentresult import MAX_TERMINATION_MESSAGE, AgentResult
from virtmigrate.api.exitcodes import ExitCode


@dataclass(frozen=True)
class Result:
    exit_code: ExitCode
    message: str                       # what happened, for a human; names the domain and the fix
    duration_s: float = 0.0            # wall time of the migration call
    data_total: int = 0
    data_processed: int = 0
    downtime_ms: int | None = None     # the real switch-over pause libvirt measured (success only)
    iterations: int = 0
    mode: Mode = Mode.PRE_COPY
    actions: tuple[str, ...] = field(default_factory=tuple)
    call_started: str = ""             # wall times (RFC 3339) of the migration call, for the log only
    call_ended: str = ""

    def report(self) -> AgentResult:
        return AgentResult(int(self.exit_code), self.message, duration_s=self.duration_s, data_total=self.data_total,
                           data_processed=self.data_processed, downtime_ms=self.downtime_ms,
                           iterations=self.iterations, mode=self.mode.value, actions=self.actions)

    def to_json(self) -> dict[str, Any]:
        return self.report().to_json()


def termination_message(result: Result, *, limit: int = MAX_TERMINATION_MESSAGE) -> str:
    """The result as compact JSON of at most `limit` bytes (virtmigrate.api.agentresult)."""
    return result.report().termination_message(limit=limit)
