"""The agent's log: one JSON object per line on stderr, level-filtered, identity bound once.

`agent_logger(level, **identity)` is called once by cmd/agent.py and handed down. It is
virtmigrate.jsonlog (the same lines structlog's JSON renderer wrote) and imports nothing: the first log
line comes right after migrateToURI3 has been started, and anything it loaded would take CPU from the
migration's QEMUs (the agent must add nothing measurable to libvirt's own time).
"""

from __future__ import annotations

from typing import Any

from virtmigrate.jsonlog import JsonLogger


def agent_logger(level: str = "info", **identity: Any) -> JsonLogger:
    """The agent's logger: JSON lines on stderr with `identity` (domain, migration) in every line."""
    return JsonLogger(level=level, **{k: v for k, v in identity.items() if v is not None})
