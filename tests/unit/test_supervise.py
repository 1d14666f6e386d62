"""The local cluster's supervisor (virtmigrate/local/supervise.py) with real processes: it restarts the
controller the way a kubelet restarts a Deployment's container after a failure exit (the controller exits 1
when it loses its Lease), and leaves a process that was stopped or killed to whoever did it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
