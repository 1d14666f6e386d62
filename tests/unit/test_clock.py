"""The fake clock moves only when told, and wakes exactly the sleepers whose time has come."""

from __future__ import annotations

import threading

from virtmigrate.clock import FakeClock


def test_fake_clock_sleeper_wakes_only_after_step() -> None:
    clock = FakeClock()
    woke = threading.Event()

    def sleeper() -> None:
        clock.sleep(10)
        woke.set()

    t = threading.Thread(target=sleeper)
    t.start()
    assert clock.wait_for_waiters(1)
    clock.step(9.9)
    assert not woke.wait(0.05)
    clock.step(0.1)
    assert woke.wait(2)
    t.join(2)
    assert not clock.has_waiters()


def test_fake_clock_wait_returns_true_when_event_set_before_deadline() -> None:
    clock = FakeClock()
    ev = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(clock.wait(ev, 60)))
    t.start()
    assert clock.wait_for_waiters(1)
    ev.set()
    t.join(2)
    assert result == [True]


def test_fake_clock_wall_follows_steps() -> None:
    clock = FakeClock()
    w0 = clock.wall()
    clock.step(90)
    assert (clock.wall() - w0).total_seconds() == 90
