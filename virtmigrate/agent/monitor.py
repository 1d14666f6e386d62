"""The monitor loop: observe the job, ask the pure steering functions, act on the `Domain`, sleep.

Runs on the agent's main thread while migrate.py's worker thread is blocked in migrateToURI3 (on
another connection). Ends when `done` is set (the migrate call returned). A cancel request (signal)
is passed in as `Cancel` and acted on like any decision. Time only through the injected Clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from virtmigrate.agent import steering
from virtmigrate.agent.decisions import Action, Decision
from virtmigrate.agent.domain import Domain
from virtmigrate.agent.jobstats import JOB_NONE, JobStats, Mode
from virtmigrate.agent.settings import Policy
from virtmigrate.agent.steering import SteeringState
from virtmigrate.clock import Clock
from virtmigrate.errors import LibvirtError


@dataclass
class Cancel:
    """A cancel request: set by a signal handler, read by the loop. `wake` interrupts the loop's sleep."""

    wake: threading.Event = field(default_factory=threading.Event)
    signal_name: str = ""

    def request(self, signal_name: str) -> None:
        self.signal_name = self.signal_name or signal_name
        self.wake.set()


StatsHook = Callable[[JobStats, Mode, float], None]  # (stats, mode, now_s): progress reporting


def run_monitor(domain: Domain, policy: Policy, *, clock: Clock, done: threading.Event, cancel: Cancel,
                initial_downtime_ms: int = 0, on_stats: StatsHook | None = None,
                log: Any = None) -> SteeringState:
    """Watch the job until `done` is set; return the final steering state (mode, actions, abort reason)."""
    if log is None:
        from virtmigrate.jsonlog import JsonLogger  # the agent passes its own logger; tests may not

        log = JsonLogger()
    state = SteeringState(started_s=clock.now(), downtime_ms=initial_downtime_ms)
    while not done.is_set():
        now = clock.now()
        try:
            stats = domain.job_stats()
        except LibvirtError as e:
            log.debug("job_stats_failed", error=str(e))  # transient: the job may be ending; poll again
            stats = JobStats(job_type=JOB_NONE)
        if stats.active:
            state = steering.observe(state, stats, now)
            if on_stats is not None:
                on_stats(stats, state.mode, now)
        if stats.active or cancel.signal_name:
            for d in steering.decide_next(state, now, policy, cancel=cancel.signal_name):
                state = _act(domain, state, d, log)
            if cancel.signal_name and (state.abort is not None or state.mode == Mode.POST_COPY):
                state = steering.note_cancel(state)  # acted on (or refused in post-copy): once is enough
        if clock.wait(cancel.wake, policy.poll_interval_s):
            cancel.wake.clear()
    return state


def _act(domain: Domain, state: SteeringState, d: Decision, log: Any) -> SteeringState:
    if d.action == Action.NONE:
        if d.reason:
            log.info("decision", action=d.action.value, reason=d.reason)
        return state
    try:
        if d.action == Action.SET_DOWNTIME:
            domain.set_max_downtime(d.value)
        elif d.action == Action.START_POST_COPY:
            domain.start_post_copy()
        elif d.action == Action.PAUSE:
            domain.suspend()
        elif d.action == Action.RAISE_THROTTLE:
            domain.raise_throttle(d.value)
        elif d.action == Action.ABORT:
            domain.abort_job()
    except LibvirtError as e:
        log.warning("action_failed", action=d.action.value, reason=d.reason, error=str(e))
        return steering.note_failure(state, d, str(e))
    level = log.debug if d.action == Action.SET_DOWNTIME else log.info
    level("action", action=d.action.value, value=d.value or None, reason=d.reason,
          exit_code=d.exit_code.name if d.exit_code is not None else None)
    return steering.apply(state, d)
