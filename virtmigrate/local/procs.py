"""Background processes tracked by pid files: start detached, check, stop exactly what we started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def start_ticks(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22): with the pid it
    names one process across pid reuse. None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def started_at(pid: int) -> float | None:
    """When process `pid` started, as a wall-clock time (boot time + its start ticks)."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime "))
    return btime + int(ticks) / os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start(name: str, argv: Sequence[str], state: Path, *, env: dict[str, str] | None = None,
          cwd: Path | None = None, exe: str | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, output to `state/logs/<name>.log`, pid in `state/pids/<name>.pid`.

    `exe` is the program the process runs once started, when argv[0] execs another (`nsenter ... -- prog`):
    the pid file records it, so `alive` and `stop` recognise the process."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env, cwd=cwd)
    log.close()
    (state / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n{exe or argv[0]}\n")
    return proc


def _pid_of(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is alive and still runs the recorded program."""
    try:
        pid_s, exe = pidfile.read_text().splitlines()[:2]
        pid = int(pid_s)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, ValueError):
        return None
    if state == "Z":
        return None
    return pid if cmdline == exe else None


def pid(name: str, state: Path) -> int | None:
    """The pid of the process `start` recorded as `name`, None unless it is alive."""
    return _pid_of(state / "pids" / f"{name}.pid")


def alive(name: str, state: Path) -> bool:
    return pid(name, state) is not None


def stop(name: str, state: Path, *, grace: float = 10.0) -> bool:
    """SIGTERM the recorded process group, SIGKILL after `grace`; True if something was stopped."""
    pidfile = state / "pids" / f"{name}.pid"
    pid = _pid_of(pidfile)
    stopped = False
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _pid_of(pidfile) is not None:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _pid_of(pidfile) is not None and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        stopped = True
    pidfile.unlink(missing_ok=True)
    return stopped
