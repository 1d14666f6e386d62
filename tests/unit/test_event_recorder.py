"""KubeEventRecorder: every Event written, one object's in order, repeats aggregated, nothing blocks."""

from __future__ import annotations

import threading
from typing import Any

from virtmigrate.clock import FakeClock
from virtmigrate.controller.events import NORMAL, KubeEventRecorder


class FakeEvents:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        with self.lock:
            self.created.append(obj)
        return obj

    def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, **_: Any) -> dict[str, Any]:
        with self.lock:
            self.patched.append((name, patch))
        return {}


def migration(i: int) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
            "metadata": {"name": f"m{i}", "namespace": "default", "uid": f"uid-{i}"}}


def test_every_event_of_many_objects_is_written_in_order_per_object() -> None:
    client = FakeEvents()
    rec = KubeEventRecorder(client, clock=FakeClock(), writers=4)  # type: ignore[arg-type]
    reasons = ["Pending", "Scheduling", "Scheduled", "TargetReady", "AgentCreated", "Running", "Succeeded"]
    for r in reasons:
        for i in range(300):
            rec.event(migration(i), NORMAL, r, f"{r} of m{i}")
    rec.stop(timeout=30)
    assert rec.dropped == 0
    assert len(client.created) == 300 * len(reasons)
    for i in range(300):
        mine = [e["reason"] for e in client.created if e["involvedObject"]["name"] == f"m{i}"]
        assert mine == reasons


def test_a_repeat_bumps_the_count_of_the_first_event() -> None:
    client = FakeEvents()
    rec = KubeEventRecorder(client, clock=FakeClock(), writers=4)  # type: ignore[arg-type]
    for _ in range(3):
        rec.event(migration(1), NORMAL, "WaitingForCapacity", "5 running")
    rec.stop(timeout=30)
    assert len(client.created) == 1
    assert [p["count"] for _, p in client.patched] == [2, 3]
