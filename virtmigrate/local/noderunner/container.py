"""Container and probe processes: started inside a node's mount namespace, signalled as a group.

Used by podworker.py. Each container runs `nsenter -t <libvirtd pid> -m -- sh -c SHIM ... argv` in a
session of its own, so that SIGTERM/SIGKILL reach the whole group. The shim (a few lines of sh, the role
containerd-shim plays for a kubelet) waits for the container process and writes its exit code to the
container's exit file: the container outlives a runner that dies, and the next runner of the node adopts
it (`Adopted`) and still learns how it ended. Output goes to the container's log file. For the containers
it started, the runner is the shim's parent, so `poll()` sees the exit at once; `notify_exit` has a waiter
thread call back the moment a process ends, so the sync loop wakes then (a finished agent is reported
without delay). Probes run without a shim: they end with the runner that started them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from virtmigrate.clock import Clock, RealClock
from virtmigrate.local import procs

NSENTER = "nsenter"
# $1: the exit file, then the container's argv. The shim survives SIGTERM/SIGINT (trapped; the container
# gets them from the group signal), waits for the container, records its code (128+n after signal n) and
# exits with it. The trap is set before the container starts, so a SIGTERM to the group right after the start
# cannot kill the shim before it records the exit; the container's own dispositions stay untouched (a caught
# signal is reset to its default in the command the shell runs: only ignored ones would be inherited).
# A `wait` the trap interrupts returns 128+n whatever the container does, and the container may end (and be
# reaped into the shell's job table) in that same instant: so the shim waits again whenever the trap ran and
# `wait` said >128, until a `wait` reports the job itself; a second `wait` on a job already reported says 127
# (no such job), and then the code reported first stands.
SHIM = ('f=$1; shift; trap s=1 TERM INT HUP; "$@" & c=$!; r=; '
        'while :; do s=; wait $c; x=$?; [ $x -eq 127 ] && [ -n "$r" ] && break; r=$x; '
        '[ -n "$s" ] && [ $x -gt 128 ] || break; done; '
        'echo $r >"$f.tmp" && mv "$f.tmp" "$f"; exit $r')
UNKNOWN_EXIT = 137  # an adopted container that ended without an exit file (its shim was killed too)
ADOPTED_POLL_S = 0.05  # how often Adopted.wait looks whether the container ended


def ns_prefix(ns_pid: int | None, workdir: Path | str) -> list[str]:
    """The command prefix entering the mount namespace of `ns_pid` (none when ns_pid is None)."""
    if ns_pid is None:
        return []
    return [NSENTER, "-t", str(ns_pid), "-m", f"--wd={workdir}", "--"]


def shimmed(argv: Sequence[str], exit_file: Path) -> list[str]:
    """`argv` run under the shim that records its exit code in `exit_file`."""
    return ["/bin/sh", "-c", SHIM, "shim", str(exit_file), *argv]


class Adopted:
    """A container an earlier runner of this node started (its shim outlived that runner): watched through
    /proc and its exit file, as a kubelet re-attaches to its runtime's containers. Offers the part of
    Popen's interface the pod worker uses (`pid`, `poll`, `wait`)."""

    def __init__(self, pid: int, start: str, exit_file: Path, *, clock: Clock | None = None) -> None:
        self.pid = pid
        self.start = start
        self.exit_file = exit_file
        self.returncode: int | None = None
        self._clock = clock or RealClock()

    def poll(self) -> int | None:
        if self.returncode is None and procs.start_ticks(self.pid) != self.start:
            self.returncode = exit_code_in(self.exit_file)
            if self.returncode is None:
                self.returncode = UNKNOWN_EXIT
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Poll every ADOPTED_POLL_S of the clock until the container ended (it is no child of ours: nothing
        to wait on); raises subprocess.TimeoutExpired after `timeout`, as Popen.wait does."""
        deadline = None if timeout is None else self._clock.now() + timeout
        while (rc := self.poll()) is None:
            if deadline is not None and self._clock.now() >= deadline:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0.0)
            self._clock.sleep(ADOPTED_POLL_S)
        return rc


def exit_code_in(exit_file: Path) -> int | None:
    """The exit code a container's shim recorded, None when there is none (yet)."""
    try:
        return int(exit_file.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_record(path: Path) -> tuple[int, str, str] | None:
    """(pid, start ticks, node) as a runner recorded a container process (`record_pid`), None if unreadable."""
    try:
        pid_s, start, owner = path.read_text().split()[:3]
        return int(pid_s), start, owner
    except (OSError, ValueError):
        return None


def recorded_pid(path: Path, node: str) -> tuple[int, str] | None:
    """(pid, start ticks) of a container process recorded by a runner of `node`, when it still runs."""
    rec = pid_record(path)
    if rec is None or rec[2] != node or procs.start_ticks(rec[0]) != rec[1]:
        return None
    return rec[0], rec[1]


def spawn(argv: Sequence[str], *, env: Mapping[str, str], ns_pid: int | None, workdir: Path | str,
          log_path: Path | None) -> subprocess.Popen[bytes]:
    """Start `argv` (raises OSError when it cannot be executed at all)."""
    out: int | object = subprocess.DEVNULL
    log = None
    if log_path is not None:
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        out = log
    try:
        return subprocess.Popen([*ns_prefix(ns_pid, workdir), *argv], env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,  # type: ignore[arg-type]
                                cwd=str(workdir) if ns_pid is None else None)
    finally:
        if log is not None:
            log.close()


def notify_exit(proc: subprocess.Popen[bytes], on_exit: Callable[[], None]) -> None:
    """Call `on_exit` (from a daemon thread) as soon as `proc` has exited and been reaped. The owner keeps
    using `poll()`/`wait()`: Popen serialises the reaping, so both see the same return code."""
    def wait() -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown; the owner's poll still sees the exit
            proc.wait()
        on_exit()

    threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()


Process = subprocess.Popen[bytes] | Adopted


def signal_group(proc: Process, sig: int) -> None:
    """Send `sig` to the process group the process leads (its whole container)."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # children may outlive the leader: reach them too
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def kill_group(proc: Process) -> None:
    signal_group(proc, signal.SIGKILL)


def read_tail(path: Path, limit: int) -> str:
    """The last `limit` bytes of a file ('' when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def record_pid(path: Path, pid: int, *, node: str) -> None:
    """Remember a container process (pid, start time, node) so a later runner can find it."""
    path.write_text(f"{pid} {procs.start_ticks(pid) or 0} {node}\n")


def stop_orphans(pods_dir: Path, node: str, *, keep: Collection[str], grace_s: float, clock: Clock) -> list[int]:
    """Stop container processes a previous runner of `node` left running for pods that are no longer bound
    to it (deleted while no runner ran): SIGTERM their groups (a launcher then shuts its guest down),
    SIGKILL what is left after `grace_s`. The containers of the pods in `keep` (uids) are adopted instead.
    Returns the pids that were stopped."""
    found: list[int] = []
    for pidfile in pods_dir.glob("*/*.pid"):
        if pidfile.parent.name in keep:
            continue
        rec = pid_record(pidfile)
        if rec is None or rec[2] != node:
            continue  # another node's runner (a thread of this process) handles it
        if procs.start_ticks(rec[0]) == rec[1]:
            found.append(rec[0])
        pidfile.unlink(missing_ok=True)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = clock.now() + grace_s
    while any(procs.start_ticks(p) is not None for p in found) and clock.now() < deadline:
        clock.sleep(0.1)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return found

