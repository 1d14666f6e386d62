"""Container and probe processes: started inside a node's mount namespace, signalled as a group.

Used by podworker.py. Each process runs `nsenter -t <libvirtd pid> -m -- argv` (nsenter execs argv, so the
pid we hold is the container's), in a session of its own so that SIGTERM/SIGKILL reach its children too.
Output goes to the container's log file. The runner is the parent, so `poll()` sees the exit at once;
`notify_exit` has a waiter thread call back the moment a process ends, so the runner's sync loop wakes
then instead of noticing at its next period (a finished agent or probe is reported without delay).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from virtmigrate.clock import Clock
from virtmigrate.local import procs

NSENTER = "nsenter"


def ns_prefix(ns_pid: int | None, workdir: Path | str) -> list[str]:
    """The command prefix entering the mount namespace of `ns_pid` (none when ns_pid is None)."""
    if ns_pid is None:
        return []
    return [NSENTER, "-t", str(ns_pid), "-m", f"--wd={workdir}", "--"]


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


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the process group the process leads (its whole container)."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # children may outlive the leader: reach them too
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
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


def stop_orphans(pods_dir: Path, node: str, *, grace_s: float, clock: Clock) -> list[int]:
    """Stop container processes a previous runner of `node` left running (it was killed, not stopped):
    SIGTERM their groups (a launcher then shuts its guest down), SIGKILL what is left after `grace_s`.
    Returns the pids that were found. A kubelet would adopt them; this runner cannot wait for a
    process that is not its child, and a guest must not run twice."""
    found: list[int] = []
    for pidfile in pods_dir.glob("*/*.pid"):
        try:
            pid_s, start, owner = pidfile.read_text().split()[:3]
            pid = int(pid_s)
        except (OSError, ValueError):
            continue
        if owner != node:
            continue  # another node's runner (a thread of this process) handles it
        if procs.start_ticks(pid) == start:
            found.append(pid)
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
