"""The agent's result and its JSON termination message (at most 4 KiB, Kubernetes' limit).

Built by migrate.py from the migration's outcome; written by cmd/agent.py to the termination-message
path, where the controller reads it back (kubelet copies it into the pod's status) and copies the
fields to the Migration's status.result (the keys match that schema).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.agent.jobstats import Mode
from virtmigrate.api.exitcodes import ExitCode, phase_for_exit_code

MAX_TERMINATION_MESSAGE = 4096


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

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.exit_code.name.lower(), "exitCode": int(self.exit_code),
            "reason": phase_for_exit_code(self.exit_code).reason, "message": self.message,
            "durationSeconds": round(self.duration_s, 3), "downtimeMs": self.downtime_ms,
            "dataTotal": self.data_total, "dataProcessed": self.data_processed, "iterations": self.iterations,
            "mode": self.mode.value, "actions": list(self.actions),
        }


def termination_message(result: Result, *, limit: int = MAX_TERMINATION_MESSAGE) -> str:
    """The result as compact JSON of at most `limit` bytes.

    Too long: keep the first and the latest actions (they explain the most) around a "... N more ..."
    marker, then clip each action, then clip the message.
    """
    doc = result.to_json()

    def render() -> str:
        return json.dumps(doc, separators=(",", ":"))

    actions: list[str] = list(doc["actions"])
    keep = len(actions)
    while len(render().encode()) > limit and keep > 2:
        keep -= 1
        head, tail = (keep + 1) // 2, keep // 2
        doc["actions"] = [*actions[:head], f"... {len(actions) - keep} more ...", *actions[len(actions) - tail:]]
    if len(render().encode()) > limit:
        doc["actions"] = [a[:120] for a in doc["actions"]]
    while len(render().encode()) > limit and doc["message"]:
        doc["message"] = doc["message"][: len(doc["message"]) // 2]
    if len(render().encode()) > limit:
        doc["actions"] = []
    return render()
