"""The agent's result: one typed contract between the agent that writes it and the controller that reads it.

The agent (virtmigrate/agent, cmd/agent.py) writes `AgentResult.termination_message()` — compact JSON of at
most 4 KiB, Kubernetes' limit — to its termination-message path; the kubelet (or the local node runner)
copies it into the pod's status; the migration controller reads it back with `AgentResult.parse` and
copies `status_result()` into the Migration's status.result (the keys match the CRD's schema). Both
sides and their tests use this module only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.api.exitcodes import ExitCode, phase_for_exit_code

MAX_TERMINATION_MESSAGE = 4096
MAX_ACTIONS = 32  # status.result.actions kept on the Migration
CRASH_TEXT_MAX = 1024  # of a termination message that is not ours (a crash's last words)


@dataclass(frozen=True)
class AgentResult:
    exit_code: int
    message: str = ""                  # what happened, for a human; names the domain and the fix
    duration_s: float | None = None    # wall time of the migration call
    data_total: int | None = None
    data_processed: int | None = None
    downtime_ms: int | None = None     # the real switch-over pause libvirt measured (success only)
    iterations: int | None = None
    mode: str | None = None            # "pre-copy", "post-copy", ...
    actions: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        code = self.exit_code
        name = ExitCode(code).name.lower() if code in ExitCode.__members__.values() else "unknown"
        return {"outcome": name, "exitCode": code, "reason": phase_for_exit_code(code).reason,
                "message": self.message,
                "durationSeconds": None if self.duration_s is None else round(self.duration_s, 3),
                "downtimeMs": self.downtime_ms, "dataTotal": self.data_total, "dataProcessed": self.data_processed,
                "iterations": self.iterations, "mode": self.mode, "actions": list(self.actions)}

    def termination_message(self, *, limit: int = MAX_TERMINATION_MESSAGE) -> str:
        """Compact JSON of at most `limit` bytes. Too long: keep the first and the latest actions (they
        explain the most) around a "... N more ..." marker, then clip each action, then the message."""
        doc = self.to_json()

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

    @classmethod
    def parse(cls, exit_code: int, text: str) -> AgentResult:
        """The result an agent pod left: its exit code and termination message. A message that is not our
        JSON (a crash, an OOM kill's last log lines) becomes the message, clipped; never raises."""
        data: Mapping[str, Any] = {}
        if text:
            try:
                loaded = json.loads(text)
                data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                data = {}
        if not data:
            return cls(exit_code, text.strip()[:CRASH_TEXT_MAX])

        def num(key: str, typ: type) -> Any:
            v = data.get(key)
            try:
                return None if v is None else typ(v)
            except (TypeError, ValueError):
                return None

        actions = tuple(a if isinstance(a, str) else " ".join(f"{k}={v}" for k, v in a.items())
                        if isinstance(a, Mapping) else str(a) for a in data.get("actions") or ())
        mode = data.get("mode")
        return cls(exit_code, str(data.get("message") or ""), duration_s=num("durationSeconds", float),
                   data_total=num("dataTotal", int), data_processed=num("dataProcessed", int),
                   downtime_ms=num("downtimeMs", int), iterations=num("iterations", int),
                   mode=None if mode is None else str(mode), actions=actions)

    def status_result(self) -> dict[str, Any]:
        """status.result of the Migration (without the message: the CRD keeps it in status.message)."""
        code = self.exit_code
        outcome = (ExitCode(code).name.lower() if code in ExitCode.__members__.values()
                   else phase_for_exit_code(code).reason)
        out: dict[str, Any] = {"exitCode": code, "outcome": outcome}
        for key, val in (("durationSeconds", self.duration_s), ("downtimeMs", self.downtime_ms),
                         ("dataTotal", self.data_total), ("dataProcessed", self.data_processed),
                         ("iterations", self.iterations), ("mode", self.mode)):
            if val is not None:
                out[key] = val
        if self.actions:
            out["actions"] = list(self.actions[:MAX_ACTIONS])
        return out
