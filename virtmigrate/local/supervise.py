"""`python -m virtmigrate.local.supervise`: keep one process of the local cluster running, as the kubelet keeps
a Deployment's container running (restartPolicy Always) — here for the controller, which exits 1 when it loses
its Lease (a long API server outage, say) so that its replica restarts clean.

    python -m virtmigrate.local.supervise --pidfile=<state>/pids/controller.pid --log=<log> -- <argv...>

The supervised process runs in a session of its own; the pid file (procs.py's format: pid, program) always
names it, so `procs.alive`/`procs.stop` and the tests that signal it see the process itself. It is started
again, after a back-off, when it exits with a non-zero code. It is not when it exits 0 (stopped on request)
or is killed by a signal: whoever signalled it (`cluster down`, a test, the chaos harness) owns what follows,
and `cluster up` starts it again. The supervisor then exits too.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from virtmigrate.clock import Clock, RealClock

BACKOFF_S = (1.0, 2.0, 5.0, 10.0)  # the kubelet's CrashLoopBackOff, shortened for a local cluster
HEALTHY_RUN_S = 60.0               # a run this long resets the back-off


class Running(Protocol):
    """The supervised process, as far as the supervisor needs it (subprocess.Popen)."""

    pid: int

    def wait(self) -> int: ...


def should_restart(returncode: int) -> bool:
    """Restart after a failure exit; never after a clean exit or a death by signal (negative code)."""
    return returncode > 0


def next_failures(failures: int, ran_s: float) -> int:
    """The failures in a row, counting the run that just failed after `ran_s`: a healthy run starts over."""
    return 1 if ran_s >= HEALTHY_RUN_S else failures + 1


def backoff_s(failures: int) -> float:
    return BACKOFF_S[min(max(failures - 1, 0), len(BACKOFF_S) - 1)]


def start_logged(command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """`command` in a session of its own, its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def supervise(command: Sequence[str], *, pidfile: Path, log: Path, clock: Clock,
              start: Callable[[Sequence[str], Path], Running] = start_logged) -> int:
    """Run `command` until it ends without a failure exit, starting it again after each failure exit after
    `backoff_s` of `clock`; returns 0. `start` is the process starter (tests: a fake process)."""
    failures = 0
    while True:
        started = clock.now()
        proc = start(command, log)
        pidfile.write_text(f"{proc.pid}\n{command[0]}\n")
        rc = proc.wait()
        if not should_restart(rc):
            return 0
        failures = next_failures(failures, clock.now() - started)
        delay = backoff_s(failures)
        print(f"supervise: {command[0]} exited with {rc}; starting it again in {delay:.0f}s", flush=True)
        clock.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m virtmigrate.local.supervise")
    ap.add_argument("--pidfile", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True, help="the supervised process's output (appended)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command to supervise")
    return supervise(command, pidfile=args.pidfile, log=args.log, clock=RealClock())


if __name__ == "__main__":
    sys.exit(main())
