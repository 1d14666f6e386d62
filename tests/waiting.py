"""Bounded real-time waits for another thread's or process's progress (no fixed sleeps in tests)."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(pred: Callable[[], object], timeout: float = 5.0, *, interval: float = 0.001) -> bool:
    """True as soon as `pred()` is truthy; False if it is still falsy after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())
