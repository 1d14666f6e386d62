"""The local cluster's supervisor (virtmigrate/local/supervise.py) with real processes: it restarts the
controller the way a kubelet restarts a Deployment's container after a failure exit (the controller exits 1
when it loses its Lease), and leaves a process that was stopped or killed to whoever did it. Its back-off runs
on a fake clock, with fake processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from virtmigrate.clock import FakeClock
from virtmigrate.local import supervise


def test_the_restart_policy() -> None:
    assert supervise.should_restart(1) and supervise.should_restart(2)
    assert not supervise.should_restart(0)      # stopped on request
    assert not supervise.should_restart(-9)     # killed: whoever killed it owns what follows
    assert [supervise.backoff_s(n) for n in (1, 2, 3, 4, 9)] == [1.0, 2.0, 5.0, 10.0, 10.0]


def test_a_failure_exit_is_restarted_and_a_clean_exit_ends_supervision(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Fails on its first run, exits 0 on its second.
    script = f'echo run >> {runs}; [ "$(wc -l < {runs})" -ge 2 ] && exit 0; exit 1'
    pidfile = tmp_path / "child.pid"
    sup = subprocess.Popen([sys.executable, "-m", "virtmigrate.local.supervise", f"--pidfile={pidfile}",
                            f"--log={tmp_path / 'child.log'}", "--", "/bin/sh", "-c", script],
                           stdout=subprocess.PIPE, text=True)
    out, _ = sup.communicate(timeout=30)
    assert sup.returncode == 0
    assert runs.read_text().count("run") == 2
    assert "/bin/sh exited with 1; starting it again in 1s" in out
    assert pidfile.read_text().splitlines()[1] == "/bin/sh"


def test_a_killed_process_is_not_restarted(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    sup = subprocess.Popen([sys.executable, "-m", "virtmigrate.local.supervise", f"--pidfile={pidfile}",
                            f"--log={tmp_path / 'child.log'}", "--", "/bin/sleep", "60"])
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int(pidfile.read_text().split()[0])
    subprocess.run(["kill", "-KILL", str(pid)], check=True)
    assert sup.wait(timeout=10) == 0
    assert int(pidfile.read_text().split()[0]) == pid  # nothing started after it


# --- the back-off, on a fake clock -------------------------------------------------------------------------

class FakeRun:
    """A supervised process that runs `ran_s` of the fake clock, then exits with `rc`."""

    def __init__(self, pid: int, rc: int, ran_s: float, clock: FakeClock) -> None:
        self.pid, self.rc, self.ran_s, self.clock = pid, rc, ran_s, clock

    def wait(self) -> int:
        self.clock.step(self.ran_s)
        return self.rc


def _sleep_requested(clock: FakeClock) -> float:
    """The seconds the supervisor sleeps for, once it sleeps (waited for in bounded real time)."""
    for _ in range(2000):
        deadline = clock.next_deadline()
        if deadline is not None and deadline > clock.now():  # not the sleep the test just ended
            return deadline - clock.now()
        threading.Event().wait(0.005)
    raise AssertionError("the supervisor never slept")


@pytest.mark.timeout(30)
def test_failures_in_a_row_back_off_on_the_clock_and_a_healthy_run_starts_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    # (exit code, seconds it ran): three quick failures, one after a healthy run, then a clean exit.
    runs = [(1, 1.0), (1, 1.0), (2, 1.0), (1, supervise.HEALTHY_RUN_S), (0, 5.0)]
    started: list[tuple[list[str], Path]] = []

    def start(command: Sequence[str], log: Path) -> FakeRun:
        started.append((list(command), log))
        rc, ran_s = runs[len(started) - 1]
        return FakeRun(100 + len(started), rc, ran_s, clock)

    pidfile, log = tmp_path / "child.pid", tmp_path / "child.log"
    result: list[int] = []
    sup = threading.Thread(target=lambda: result.append(
        supervise.supervise(["ctl", "--flag"], pidfile=pidfile, log=log, clock=clock, start=start)))
    sup.start()
    delays = []
    for _ in range(4):
        delays.append(_sleep_requested(clock))
        clock.step(delays[-1])
    sup.join(10)
    assert result == [0]
    assert delays == [1.0, 2.0, 5.0, 1.0]  # the healthy run reset the back-off
    assert started == [(["ctl", "--flag"], log)] * 5
    assert pidfile.read_text() == "105\nctl\n"  # the pid file names the latest process
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "supervise: ctl exited with 2; starting it again in 5s"
    assert len(out) == 4


def test_next_failures_counts_quick_failures_and_resets_after_a_healthy_run() -> None:
    assert supervise.next_failures(0, 1.0) == 1
    assert supervise.next_failures(3, supervise.HEALTHY_RUN_S - 0.1) == 4
    assert supervise.next_failures(3, supervise.HEALTHY_RUN_S) == 1


def test_a_listening_socket_is_bound_once_and_inherited_as_descriptor_3(tmp_path: Path) -> None:
    # The child checks what it got on fd 3 (no connection is made) and exits 0, which ends supervision.
    seen = tmp_path / "seen"
    check = ("import socket; s = socket.socket(fileno=3); "
             f"open({str(seen)!r}, 'w').write(f'{{s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)}} "
             "{s.getsockname()[0]}')")
    sup = subprocess.run([sys.executable, "-m", "virtmigrate.local.supervise", f"--pidfile={tmp_path / 'c.pid'}",
                          f"--log={tmp_path / 'c.log'}", "--listen=127.0.0.1:0", "--", sys.executable, "-c", check],
                         capture_output=True, text=True, timeout=30)
    assert sup.returncode == 0, sup.stderr
    assert seen.read_text() == "1 127.0.0.1", (tmp_path / "c.log").read_text()
