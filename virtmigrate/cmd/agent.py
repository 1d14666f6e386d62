"""`virtmigrate-agent`: live-migrate one libvirt domain peer to peer and exit with its outcome.

Flags (each also a VIRTMIGRATE_* variable) are parsed by virtmigrate.agent.settings; exit codes are
virtmigrate.api.exitcodes.ExitCode; the JSON result goes to the termination-message path.
SIGTERM/SIGINT cancel the migration (abort, guest stays on the source) unless it already completed.
Run as the program (argv None), it ends with os._exit once its result is written: nothing is left to
tear down (connections are closed; the libvirt event loop and a progress sender are daemon threads),
and interpreter teardown took 20-70 ms between the migration's end and the pod's completion.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from virtmigrate.agent.logs import agent_logger
from virtmigrate.agent.migrate import Migrator
from virtmigrate.agent.monitor import Cancel
from virtmigrate.agent.progress import ProgressReporter
from virtmigrate.agent.result import Result, termination_message
from virtmigrate.agent.settings import Settings, parse_settings
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.clock import RealClock
from virtmigrate.errors import ConfigError, VirtMigrateError

if TYPE_CHECKING:
    from virtmigrate.kube import KubeClient

OUTCOME_WRITE_S = 2.0  # at most this long to put the outcome on the Migration before exiting


def _write_termination_message(path: str, message: str, log: object) -> None:
    try:
        Path(path).write_text(message)
    except OSError as e:
        log.error("termination_message_failed", path=path, error=str(e))  # type: ignore[attr-defined]


class _ApiAccess:
    """An agent named its Migration reads and writes it: it reports progress, puts its outcome there when the
    job ends, and with --await-target-uid waits there for its target (agent/gate.py). One API client, made on a
    thread of its own. An agent that waits for its target starts making it at once, so that loading it overlaps
    the libvirt connections; one created at TargetReady (the default) has nothing to wait for and makes it on
    first use, once the job runs: loading the client (~50 ms of imports, and the first request's TLS handshake)
    then never delays the job's start, nor competes for the interpreter with the calls that prepare it."""

    def __init__(self, settings: Settings, cancel: Cancel, clock: RealClock, log: object) -> None:
        self.s, self.cancel, self.clock, self.log = settings, cancel, clock, log
        self._made: list[KubeClient | BaseException] = []
        self._lock = threading.Lock()
        self._maker = threading.Thread(target=self._make, name="api-client", daemon=True)
        if settings.await_target_uid:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._maker.ident is None:  # not started yet
                self._maker.start()

    def _make(self) -> None:
        try:
            from virtmigrate.kube import KubeClient

            self._made.append(KubeClient.auto(self.s.kubeconfig or None))
        except BaseException as e:
            self._made.append(e)

    def client(self) -> KubeClient:
        self._start()
        self._maker.join()
        if isinstance(self._made[0], BaseException):
            raise self._made[0]
        return self._made[0]

    def await_target(self) -> Result | None:
        from virtmigrate.agent.gate import await_target

        return await_target(self.client, self.s.migration, self.s.namespace, self.s.await_target_uid,
                            cancel=self.cancel, clock=self.clock, timeout_s=self.s.await_target_timeout_s,
                            log=self.log)

    def write_outcome(self, result: Result, message: str) -> None:
        """Bounded: the exit code carries the same claim, so a slow API must not hold up the exit."""
        from virtmigrate.agent.gate import write_outcome

        def write() -> None:
            with contextlib.suppress(Exception):
                write_outcome(self.client(), self.s.migration, self.s.namespace, int(result.exit_code), message,
                              log=self.log)

        writer = threading.Thread(target=write, name="outcome", daemon=True)
        writer.start()
        writer.join(OUTCOME_WRITE_S)


def _progress(clock: RealClock, log: object, api: _ApiAccess | None) -> ProgressReporter | None:
    """Progress on the Migration through `api`'s client (--kubeconfig, else $KUBECONFIG, else the in-cluster
    service account); no Migration named: progress goes to the log only."""
    if api is None:
        return None
    return ProgressReporter(api.client, api.s.migration, api.s.namespace, wall=clock.wall, log=log)


def _termination_path_of(argv: list[str]) -> str:
    """The termination-message path even when the other flags did not parse: flag, variable, default."""
    flag = "--termination-message-path"
    for i, a in enumerate(argv):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
    return os.environ.get("VIRTMIGRATE_TERMINATION_MESSAGE_PATH", "/dev/termination-log")


def _exit_now(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def abort_job(args: list[str]) -> int:
    """`virtmigrate-agent --abort-job --domain=NAME [--source-uri=URI]`: abort the migration job that runs
    on the domain (one that outlived its agent) and wait, bounded, until it has ended. Exit 0 when no job
    runs any more (aborted, or already over), 12 when the domain is not on this node, 10 when libvirt is
    unreachable, 20 when the job would not end."""
    import libvirt

    from virtmigrate.clock import RealClock

    opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    name, uri = opts.get("domain", ""), opts.get("source-uri", "qemu:///system")
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        print(f"abort-job: cannot connect to {uri}: {e}", file=sys.stderr)
        return int(ExitCode.SOURCE_UNREACHABLE)
    clock = RealClock()
    deadline = clock.now() + 30.0
    try:
        while True:
            try:
                dom = conn.lookupByName(name)
                if dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE:
                    return 0
                dom.abortJob()
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    print(f"abort-job: no domain {name!r} on {uri}", file=sys.stderr)
                    return int(ExitCode.DOMAIN_NOT_FOUND)
                if e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # no job to abort: look again
                    print(f"abort-job: {e}", file=sys.stderr)
            if clock.now() >= deadline:
                print(f"abort-job: the job of {name!r} did not end within 30s", file=sys.stderr)
                return int(ExitCode.MIGRATION_FAILED)
            clock.wait(threading.Event(), 0.2)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--abort-job" in args:
        return abort_job(args)
    try:
        settings = parse_settings(args, os.environ)
    except ConfigError as e:
        log = agent_logger("info")
        log.error("invalid_arguments", error=str(e))
        path = _termination_path_of(args)
        _write_termination_message(path, termination_message(Result(ExitCode.INVALID_ARGUMENTS, str(e))), log)
        return int(ExitCode.INVALID_ARGUMENTS)
    log = agent_logger(settings.log_level, domain=settings.domain, migration=settings.migration or None,
                       namespace=settings.namespace or None)
    cancel = Cancel()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        cancel.request(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    clock = RealClock()
    api = _ApiAccess(settings, cancel, clock, log) if settings.migration else None
    reporter = _progress(clock, log, api)
    try:
        result = Migrator(settings, cancel, clock=clock, log=log, on_stats=reporter,
                          gate=api.await_target if api is not None and settings.await_target_uid else None).run()
    except VirtMigrateError as e:
        result = Result(ExitCode.MIGRATION_FAILED, f"migration of {settings.domain!r} failed: {e}")
    finally:
        if reporter is not None:
            reporter.stop()
    log.info("migration_finished", outcome=result.exit_code.name.lower(), exit_code=int(result.exit_code),
             reason=result.message, duration_s=round(result.duration_s, 3), downtime_ms=result.downtime_ms,
             data_total=result.data_total, data_processed=result.data_processed, iterations=result.iterations,
             mode=result.mode.value, actions=list(result.actions), job_started=result.call_started or None,
             job_ended=result.call_ended or None)
    message = termination_message(result)  # the same claim on the Migration and in the pod's status
    if api is not None:
        api.write_outcome(result, message)
    _write_termination_message(settings.termination_message_path, message, log)
    if argv is None:  # the program itself (not a caller of main): exit without interpreter teardown
        _exit_now(int(result.exit_code))
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main())
