"""One live peer-to-peer migration from connection to verified result: the agent's wiring.

Fed by cmd/agent.py (Settings, a Cancel set by its signal handlers, a Clock, a logger, an optional
progress hook); returns a Result whose exit code the controller maps to the Migration's phase.

Threads and connections (see shared/notes/libvirt-hosts.md for why):
  - the migrate thread blocks in migrateToURI3 on a connection of its own;
  - the caller's thread runs the monitor loop (stats, tuning, abort) on a second connection, which
    also receives the source's JOB_COMPLETED event (the real downtime, even after post-copy);
  - a daemon thread runs libvirt's default event loop (keepalives and events).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from virtmigrate.agent.decisions import compute_downtime_steps, failed_job_outcome, next_max_downtime
from virtmigrate.agent.domain import LibvirtDomain
from virtmigrate.agent.jobstats import MIB, JobStats, Mode
from virtmigrate.agent.monitor import Cancel, StatsHook, run_monitor
from virtmigrate.agent.progress import compute_progress, should_report_progress
from virtmigrate.agent.result import Result
from virtmigrate.agent.settings import Settings
from virtmigrate.agent.steering import SteeringState
from virtmigrate.agent.verify import Placement, decide_still_on_source, decide_success, stale_source_copy
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.clock import Clock
from virtmigrate.virt import quiet_libvirt, start_event_loop

MIGRATE_FLAGS: int = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
PROGRESS_LOG_INTERVAL_S = 30.0  # info-level progress lines; every poll goes to debug
AUTO_CONVERGE_INITIAL_PCT = 20
AUTO_CONVERGE_INCREMENT_PCT = 10
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")

@dataclass
class _MigrateCall:
    """What the migrate thread leaves behind."""

    error: libvirt.libvirtError | None = None
    started_s: float = 0.0
    ended_s: float = 0.0
    started_wall: str = ""
    ended_wall: str = ""


def _rfc3339(clock: Clock) -> str:
    return clock.wall().isoformat(timespec="microseconds").replace("+00:00", "Z")


def migration_params(settings: Settings) -> dict[str, Any]:
    """migrateToURI3 typed parameters for the policy."""
    p = settings.policy
    params: dict[str, Any] = {}
    if settings.migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = settings.migration_uri
    if p.bandwidth_mibps > 0:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = p.bandwidth_mibps
        if p.allow_post_copy:  # post-copy's own cap is in bytes/s; keep the same cap
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = p.bandwidth_mibps * MIB
    if p.allow_auto_converge:
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] = AUTO_CONVERGE_INITIAL_PCT
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] = AUTO_CONVERGE_INCREMENT_PCT
    return params


def migration_flags(settings: Settings) -> int:
    flags: int = MIGRATE_FLAGS
    if settings.policy.allow_post_copy:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY  # enables the switch; the monitor decides whether to use it
    if settings.policy.allow_auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    return flags


def _lookup(conn: libvirt.virConnect, ident: str) -> libvirt.virDomain:
    if _UUID.match(ident):
        with contextlib.suppress(libvirt.libvirtError):
            return conn.lookupByUUIDString(ident)
    return conn.lookupByName(ident)


def _placement(src: libvirt.virConnect, dst: libvirt.virConnect | None, uuid: str) -> Placement:
    source_defined = source_active = False
    source_reachable = True
    try:
        d = src.lookupByUUIDString(uuid)
        source_defined, source_active = True, bool(d.isActive())
    except libvirt.libvirtError as e:
        # gone from the source only when libvirt says so; a dead connection says nothing
        source_reachable = e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    dst_defined = dst_running = dst_persistent = False
    if dst is not None:
        try:
            d = dst.lookupByUUIDString(uuid)
            dst_defined = True
            dst_running = d.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            dst_persistent = bool(d.isPersistent())
        except libvirt.libvirtError:
            pass  # absent from the destination
    return Placement(source_defined, source_active, dst_defined, dst_running, dst_persistent, source_reachable)


class Migrator:
    """Runs one migration described by `settings`; `run()` returns the Result (it never raises for
    libvirt failures: they become exit codes with messages)."""

    def __init__(self, settings: Settings, cancel: Cancel, *, clock: Clock, log: Any,
                 on_stats: StatsHook | None = None, gate: Callable[[], Result | None] | None = None) -> None:
        self.s = settings
        self.gate = gate  # once both libvirts are reached: None = go ahead, else the Result to exit with
        self.cancel = cancel
        self.clock = clock
        self.log = log
        self.on_stats = on_stats
        self._last_stats = JobStats()
        self._last_progress_log: float | None = None
        self._completed: dict[str, Any] | None = None
        self._completed_evt = threading.Event()
        self._repairs: list[str] = []  # what the agent did beyond the job (verify.stale_source_copy)

    def _open(self, uri: str) -> libvirt.virConnect:
        return libvirt.open(uri)

    def run(self) -> Result:
        quiet_libvirt()
        start_event_loop()
        name = self.s.domain
        try:
            src = self._open(self.s.source_uri)
        except libvirt.libvirtError as e:
            return Result(ExitCode.SOURCE_UNREACHABLE, f"cannot connect to the source libvirt at "
                          f"{self.s.source_uri}: {e.get_error_message()}; check --source-uri and that libvirtd "
                          "runs on this node")
        try:
            return self._run(src, name)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                src.close()

    def _run(self, src: libvirt.virConnect, name: str) -> Result:
        try:
            dom = _lookup(src, name)
        except libvirt.libvirtError as e:
            return Result(ExitCode.DOMAIN_NOT_FOUND, f"domain {name!r} not found on the source "
                          f"{self.s.source_uri}: {e.get_error_message()}; check --domain")
        if not dom.isActive():
            return Result(ExitCode.DOMAIN_NOT_FOUND, f"domain {name!r} is not running on the source "
                          f"{self.s.source_uri}; only a running domain can be live-migrated")
        uuid = str(dom.UUIDString())
        try:
            dst = self._open(self.s.destination_uri)
        except libvirt.libvirtError as e:
            return Result(ExitCode.DESTINATION_UNREACHABLE, f"cannot connect to the destination libvirt at "
                          f"{self.s.destination_uri}: {e.get_error_message()}; check --destination-uri and "
                          "that the destination's libvirtd listens there")
        try:
            return self._migrate(src, dst, dom, uuid)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                dst.close()

    def _migrate(self, src: libvirt.virConnect, dst: libvirt.virConnect, dom: libvirt.virDomain,
                 uuid: str) -> Result:
        name = self.s.domain
        if self.cancel.signal_name:
            return Result(ExitCode.CANCELLED, f"{self.cancel.signal_name} before the migration of {name!r} "
                          "started; the guest was not touched")
        policy = self.s.policy
        memory = int(dom.maxMemory()) * 1024
        initial_downtime = next_max_downtime(0.0, compute_downtime_steps(policy, memory))
        try:
            dom.migrateSetMaxDowntime(initial_downtime, 0)
        except libvirt.libvirtError as e:
            self.log.warning("set_downtime_failed", error=e.get_error_message())
            initial_downtime = 0
        cb_id = src.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_completed, None)
        try:
            mig_conn = self._open(self.s.source_uri)
        except libvirt.libvirtError as e:
            return Result(ExitCode.SOURCE_UNREACHABLE, f"second connection to {self.s.source_uri} failed: "
                          f"{e.get_error_message()}")
        # Everything is ready before the go-ahead, so that the job starts the moment it comes.
        stopped = self.gate() if self.gate is not None else None
        if stopped is None and self.cancel.signal_name:
            stopped = Result(ExitCode.CANCELLED, f"{self.cancel.signal_name} before the migration of {name!r} "
                             "started; the guest was not touched")
        if stopped is not None:
            with contextlib.suppress(libvirt.libvirtError):
                src.domainEventDeregisterAny(cb_id)
            with contextlib.suppress(libvirt.libvirtError):
                mig_conn.close()
            return stopped
        call = _MigrateCall()
        done = threading.Event()
        thread = threading.Thread(target=self._migrate_thread, args=(mig_conn, uuid, call, done),
                                  name="migrate", daemon=True)
        thread.start()  # first: the migration starts before anything else the agent does
        self.log.info("migration_started", destination=self.s.destination_uri,
                      migration_uri=self.s.migration_uri or None, bandwidth_mibps=policy.bandwidth_mibps,
                      memory_bytes=memory, downtime_ms=initial_downtime, post_copy=policy.allow_post_copy,
                      auto_converge=policy.allow_auto_converge, pause=policy.allow_pause)
        try:
            state = run_monitor(LibvirtDomain(dom), policy, clock=self.clock, done=done, cancel=self.cancel,
                                initial_downtime_ms=initial_downtime, on_stats=self._stats_hook, log=self.log)
            thread.join()
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                src.domainEventDeregisterAny(cb_id)
            with contextlib.suppress(libvirt.libvirtError):
                mig_conn.close()
        return self._conclude(src, dst, dom, uuid, call, state)

    def _migrate_thread(self, conn: libvirt.virConnect, uuid: str, call: _MigrateCall,
                        done: threading.Event) -> None:
        call.started_s, call.started_wall = self.clock.now(), _rfc3339(self.clock)
        try:
            conn.lookupByUUIDString(uuid).migrateToURI3(self.s.destination_uri, migration_params(self.s),
                                                        migration_flags(self.s))
        except libvirt.libvirtError as e:
            call.error = e
        finally:
            call.ended_s, call.ended_wall = self.clock.now(), _rfc3339(self.clock)
            done.set()
            self.cancel.wake.set()  # end the monitor's sleep now

    def _stats_hook(self, stats: JobStats, mode: Mode, now_s: float) -> None:
        self._last_stats = stats
        if should_report_progress(now_s, self._last_progress_log, PROGRESS_LOG_INTERVAL_S):
            self._last_progress_log = now_s
            self.log.info("progress", **compute_progress(stats, mode, self.clock.wall()))
        self.log.debug("job_stats", processed=stats.data_processed, remaining=stats.data_remaining,
                       total=stats.data_total, bps=stats.memory_bps, dirty_pps=stats.dirty_rate_pps,
                       iteration=stats.iteration, mode=mode.value)
        if self.on_stats is not None:
            self.on_stats(stats, mode, now_s)

    def _on_completed(self, _conn: Any, _dom: Any, params: dict[str, Any], _opaque: Any) -> None:
        self._completed = dict(params)
        self._completed_evt.set()

    def _conclude(self, src: libvirt.virConnect, dst: libvirt.virConnect, dom: libvirt.virDomain, uuid: str,
                  call: _MigrateCall, state: SteeringState) -> Result:
        name = self.s.domain
        last = self._last_stats

        def result(code: ExitCode, msg: str, figures: JobStats, downtime_ms: int | None = None) -> Result:
            return Result(code, msg, duration_s=call.ended_s - call.started_s, data_total=figures.data_total,
                          data_processed=figures.data_processed, downtime_ms=downtime_ms,
                          iterations=figures.iteration, mode=state.mode, actions=(*state.actions, *self._repairs),
                          call_started=call.started_wall, call_ended=call.ended_wall)

        if call.error is None:
            if state.mode == Mode.POST_COPY:
                # after post-copy only the source's JOB_COMPLETED event has the real downtime
                self._completed_evt.wait(1.0)
            completed = JobStats.from_libvirt(self._completed or self._dest_completed(dst, uuid))
            figures = completed if completed.data_total else last
            p = self.placement_settled(src, dst, uuid)
            problem = decide_success(p)
            if problem:
                return result(ExitCode.VERIFICATION_FAILED, f"migration of {name!r} reported success but the "
                              f"guest is {problem}", figures)
            if self.cancel.signal_name:  # never claim a cancel that did not happen
                self.log.info("cancel_too_late", signal=self.cancel.signal_name,
                              reason="the migration completed before it could be aborted")
            return result(ExitCode.SUCCEEDED, f"{name!r} runs on {self.s.destination_uri}", figures,
                          completed.downtime_ms if completed.data_total else None)
        err = call.error
        code, msg = failed_job_outcome(
            abort=state.abort, abort_reason=state.actions[-1] if state.actions else "",
            aborted_error=err.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED,
            error_message=err.get_error_message(), name=name)
        if state.mode == Mode.PAUSED:
            with contextlib.suppress(libvirt.libvirtError):
                dom.resume()  # we paused it for the copy; the copy is off, so let it run again
        p = self.placement_settled(src, dst, uuid, want_source=True)
        if not decide_success(p):  # the job's end never reached this call, but the guest made it
            return result(ExitCode.SUCCEEDED, f"{msg}; yet {name!r} runs on {self.s.destination_uri}, persistent "
                          "there and gone from the source", last)
        problem = decide_still_on_source(p)
        if problem:
            return result(ExitCode.VERIFICATION_FAILED, f"{msg}; and the guest is {problem}", last)
        return result(code, msg + "; the guest still runs on the source", last)

    def _dest_completed(self, dst: libvirt.virConnect, uuid: str) -> dict[str, Any]:
        try:
            stats: dict[str, Any] = dst.lookupByUUIDString(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            return stats
        except libvirt.libvirtError:
            return {}

    def placement_settled(self, src: libvirt.virConnect, dst: libvirt.virConnect, uuid: str, *,
                           want_source: bool = False) -> Placement:
        """The placement, re-read for up to 3 s while it is still settling (a resuming destination,
        a source whose job is being torn down, a source libvirtd restarting: it is reached again on a
        connection of its own). A stopped copy the source kept of a guest that runs, persistent, on the
        destination is undefined on the way (verify.stale_source_copy)."""
        deadline = self.clock.now() + 3.0
        fresh: libvirt.virConnect | None = None
        try:
            while True:
                p = _placement(fresh or src, dst, uuid)
                if not p.source_reachable and fresh is None:
                    with contextlib.suppress(libvirt.libvirtError):
                        fresh = self._open(self.s.source_uri)  # the daemon restarted: a new connection
                        p = _placement(fresh, dst, uuid)
                if stale_source_copy(p) and self._undefine_stale(fresh or src, uuid):
                    p = _placement(fresh or src, dst, uuid)
                # after a failure: back on the source, or (its last step lost) landed on the destination
                ok = not decide_success(p) or (want_source and not decide_still_on_source(p))
                if ok or self.clock.now() >= deadline:
                    return p
                self.clock.sleep(0.1)
        finally:
            if fresh is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    fresh.close()

    def _undefine_stale(self, src: libvirt.virConnect, uuid: str) -> bool:
        """Undefine the source's copy if it is still stopped (never a running or paused one)."""
        try:
            d = src.lookupByUUIDString(uuid)
            if d.isActive():
                return False
            d.undefine()
        except libvirt.libvirtError as e:
            self.log.warning("stale_source_copy_kept", error=e.get_error_message())
            return False
        self._repairs.append("undefined the stopped copy the source kept: the job's last step (the source's "
                            "undefine) never ran, and the guest runs, persistent, on the destination")
        self.log.warning("stale_source_copy_undefined", uuid=uuid)
        return True
