"""structlog for the agent: one JSON object per line on stderr, level-filtered, identity bound once.

`agent_logger(level, **identity)` is called once by cmd/agent.py and handed down. It imports and
configures structlog on the first log call, not before: importing structlog costs 0.1-0.2 s here,
and the first log line comes right after migrateToURI3 has been started, so that cost overlaps the
migration instead of delaying it (the agent must add nothing measurable to libvirt's own time).
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def configure_logging(level: str = "info") -> None:
    import logging  # with structlog, on the first log call: neither delays the migration's start

    import structlog

    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


class _LazyLogger:
    """A bound structlog logger created on first use (thread-safe)."""

    def __init__(self, level: str, identity: dict[str, Any]) -> None:
        self._level = level
        self._identity = identity
        self._log: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._log is None:
                import structlog

                configure_logging(self._level)
                self._log = structlog.get_logger().bind(**self._identity)
            return self._log

    def bind(self, **kw: Any) -> Any:
        return self._get().bind(**kw)

    def __getattr__(self, name: str) -> Any:  # debug, info, warning, error, ...
        return getattr(self._get(), name)


def agent_logger(level: str = "info", **identity: Any) -> Any:
    """The agent's logger: JSON lines on stderr with `identity` (domain, migration) in every line."""
    return _LazyLogger(level, {k: v for k, v in identity.items() if v is not None})
