"""The container shim of the node runner (container.py): real processes, no mocks. The shim records how a
container ended, so a runner started after a crash of the previous one adopts the container and still
reports its real exit code. An adopted container's wait polls on an injected (here fake) clock."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from virtmigrate.clock import FakeClock
from virtmigrate.local import procs
from virtmigrate.local.noderunner import container as ctr


def start(tmp_path: Path, script: str) -> tuple[ctr.Process, Path]:
    exit_file = tmp_path / "c.exit"
    proc = ctr.spawn(ctr.shimmed(["/bin/sh", "-c", script], exit_file), env={"PATH": os.environ["PATH"]},
                     ns_pid=None, workdir=tmp_path, log_path=tmp_path / "c.log")
    return proc, exit_file


def child_of(pid: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError("the shim started no container")


def test_the_exit_code_is_recorded_and_returned(tmp_path: Path) -> None:
    proc, exit_file = start(tmp_path, "exit 7")
    assert proc.wait(timeout=10) == 7
    assert ctr.exit_code_in(exit_file) == 7


def test_a_container_killed_by_a_signal_is_recorded_as_128_plus_the_signal(tmp_path: Path) -> None:
    proc, exit_file = start(tmp_path, "sleep 30")
    os.kill(child_of(proc.pid), signal.SIGKILL)  # the container alone: an OOM kill
    assert proc.wait(timeout=10) == 137
    assert ctr.exit_code_in(exit_file) == 137


def test_sigterm_to_the_group_reaches_the_container_and_the_shim_records_its_end(tmp_path: Path) -> None:
    proc, exit_file = start(tmp_path, "trap 'exit 3' TERM; sleep 30 & wait")
    child_of(child_of(proc.pid))  # the container's `sleep` runs: its own trap is set (on a loaded machine too)
    ctr.signal_group(proc, signal.SIGTERM)
    assert proc.wait(timeout=10) == 3  # the container's own answer to SIGTERM, not the shim's death
    assert ctr.exit_code_in(exit_file) == 3


def test_an_adopted_container_is_followed_until_it_ends_with_its_code(tmp_path: Path) -> None:
    proc, exit_file = start(tmp_path, "sleep 0.5; exit 5")
    adopted = ctr.Adopted(proc.pid, procs.start_ticks(proc.pid) or "", exit_file)  # as a new runner sees it
    assert adopted.poll() is None
    proc.wait(timeout=10)  # the old runner's reaping stands in for init's
    assert adopted.wait(timeout=10) == 5


def test_an_adopted_container_whose_shim_was_killed_too_ends_unknown(tmp_path: Path) -> None:
    proc, exit_file = start(tmp_path, "sleep 30")
    adopted = ctr.Adopted(proc.pid, procs.start_ticks(proc.pid) or "", exit_file)
    ctr.kill_group(proc)
    proc.wait(timeout=10)
    assert adopted.wait(timeout=10) == ctr.UNKNOWN_EXIT
    assert ctr.exit_code_in(exit_file) is None


# --- Adopted.wait on a fake clock --------------------------------------------------------------------------

def _step_while_waiting(clock: FakeClock, waiter: threading.Thread) -> int:
    """Step the fake clock one poll period each time the waiter sleeps, until it is done; the steps taken."""
    steps = 0
    while waiter.is_alive():
        if clock.wait_for_waiters(1, timeout=0.05) and clock.next_deadline() == clock.now() + ctr.ADOPTED_POLL_S:
            clock.step(ctr.ADOPTED_POLL_S)
            steps += 1
        assert steps < 1000, "the wait never timed out"
    return steps


@pytest.mark.timeout(30)
def test_an_adopted_wait_times_out_on_its_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    me = os.getpid()  # a process that outlives the test: the container never ends
    adopted = ctr.Adopted(me, procs.start_ticks(me) or "", tmp_path / "c.exit", clock=clock)
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            adopted.wait(timeout=0.5)
        except subprocess.TimeoutExpired as e:
            raised.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert _step_while_waiting(clock, waiter) >= 10  # polled on the fake clock until 0.5 s of it had passed
    waiter.join(10)
    assert len(raised) == 1 and adopted.returncode is None


@pytest.mark.timeout(30)
def test_an_adopted_wait_returns_the_code_at_the_poll_after_the_end(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = subprocess.Popen(["sleep", "60"])
    exit_file = tmp_path / "c.exit"
    adopted = ctr.Adopted(proc.pid, procs.start_ticks(proc.pid) or "", exit_file, clock=clock)
    codes: list[int] = []
    waiter = threading.Thread(target=lambda: codes.append(adopted.wait()), daemon=True)
    waiter.start()
    try:
        assert clock.wait_for_waiters(1, timeout=10)  # it polls: the container runs
        exit_file.write_text("5\n")  # what its shim records
    finally:
        proc.kill()
        proc.wait(timeout=10)
    clock.step(ctr.ADOPTED_POLL_S)
    waiter.join(10)
    assert codes == [5]
