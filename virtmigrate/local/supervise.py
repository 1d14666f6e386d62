"""`python -m virtmigrate.local.supervise`: keep one process of the local cluster running, as the kubelet keeps
a Deployment's container running (restartPolicy Always) — here for the controller, which exits 1 when it loses
its Lease (a long API server outage, say) so that its replica restarts clean.

    python -m virtmigrate.local.supervise --pidfile=<state>/pids/controller.pid --log=<log> -- <argv...>

The supervised process runs in a session of its own; the pid file (procs.py's format: pid, program) always
names it, so `procs.alive`/`procs.stop` and the tests that signal it see the process itself. It is started
again, after a back-off, when it exits with a non-zero code. It is not when it exits 0 (stopped on request)
or is killed by a signal: whoever signalled it (`cluster down`, a test, the chaos harness) owns what follows,
and `cluster up` starts it again. The supervisor then exits too.

With `--listen=HOST:PORT` (and `--listen-netns=<pinned network namespace>`) the supervisor binds that
listening socket once, in that namespace (virtmigrate.local.metricsnet), and every start of the process
inherits it as descriptor 3 (LISTEN_FD, where systemd's socket activation puts its first one): the
controller serves /metrics on it (`--metrics-fd=3`) while it runs in this machine's own namespace. A
restarted process gets the same socket, so no scrape ever finds the port taken by an earlier run.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from virtmigrate.clock import Clock, RealClock
from virtmigrate.local import metricsnet

BACKOFF_S = (1.0, 2.0, 5.0, 10.0)  # the kubelet's CrashLoopBackOff, shortened for a local cluster
HEALTHY_RUN_S = 60.0               # a run this long resets the back-off
LISTEN_FD = 3                      # the inherited listening socket's descriptor in the supervised process


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


def start_logged(command: Sequence[str], log: Path, *, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """`command` in a session of its own, its output appended to `log`, inheriting `pass_fds`."""
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, pass_fds=pass_fds)


def inherit_listener(host: str, port: int, netns: Path | None) -> int:
    """Bind `host`:`port` (inside `netns` when given) and put the listening socket on LISTEN_FD."""
    try:
        os.fstat(LISTEN_FD)
    except OSError:
        pass  # free, as it should be
    else:
        raise RuntimeError(f"descriptor {LISTEN_FD} is already open; the listening socket goes there")
    fd = metricsnet.listen_in(netns, host, port).detach()
    if fd != LISTEN_FD:
        os.dup2(fd, LISTEN_FD)  # inheritable, as dup2 makes it
        os.close(fd)
    else:
        os.set_inheritable(fd, True)
    return LISTEN_FD


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
    ap.add_argument("--listen", default="", help="HOST:PORT of a listening socket the process inherits as fd 3")
    ap.add_argument("--listen-netns", type=Path, default=None,
                    help="the pinned network namespace (/run/netns/NAME) to bind --listen in")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command to supervise")
    start = start_logged
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        start = functools.partial(start_logged, pass_fds=(inherit_listener(host, int(port), args.listen_netns),))
    return supervise(command, pidfile=args.pidfile, log=args.log, clock=RealClock(), start=start)


if __name__ == "__main__":
    sys.exit(main())
