"""Container and probe processes: started inside a node's mount namespace, signalled as a group.

Used by podworker.py. Each process runs `nsenter -t <libvirtd pid> -m -- argv` (nsenter execs argv, so the
pid we hold is the container's), in a session of its own so that SIGTERM/SIGKILL reach its children too.
Output goes to the container's log file. The runner is the parent, so `poll()` sees the exit at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

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
