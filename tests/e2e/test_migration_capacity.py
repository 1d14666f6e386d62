"""Capacity with 8 concurrent Migrations: never more than 5 running in the cluster or 2 leaving one
node; the rest wait in Pending with a condition saying why; all finish, the oldest admitted first.
Also: the controller's /metrics, /healthz and /readyz."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    controller_metrics,
    create_vm,
    metric_value,
    migration_yaml,
    vm_status,
)
from virtmigrate.kube.resources import MIGRATIONS

ADMITTED = ("Scheduling", "Scheduled", "TargetReady", "Running")
N = 8


def test_capacity_limits_hold_with_eight_migrations(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                    local_cluster: Any) -> None:
    for i in range(N):
        create_vm(kubectl, guest_kernel, f"vm{i}")
    wait_for("8 VMs running", lambda: all(vm_status(kube, namespace, f"vm{i}").get("phase") == "Running"
                                          for i in range(N)), timeout=180)
    sources = {f"m{i}": vm_status(kube, namespace, f"vm{i}")["node"] for i in range(N)}

    samples: list[list[dict[str, Any]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(kube.list_all(MIGRATIONS, namespace))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        docs = "\n---\n".join(migration_yaml(f"m{i}", f"vm{i}", bandwidthMiBps=8) for i in range(N))
        kubectl("create", "-f", "-", input=docs)
        wait_for("all 8 finished", lambda: all((m.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                                               for m in kube.list_all(MIGRATIONS, namespace))
                 and len(kube.list_all(MIGRATIONS, namespace)) == N, timeout=600, interval=0.5)
    finally:
        stop.set()
        sampler.join()

    peak, peak_node, waited = 0, 0, set()
    for snap in samples:
        active = [m for m in snap if (m.get("status") or {}).get("phase") in ADMITTED]
        peak = max(peak, len(active))
        per_node: dict[str, int] = {}
        for m in active:
            per_node[m["status"]["sourceNode"]] = per_node.get(m["status"]["sourceNode"], 0) + 1
        peak_node = max([peak_node, *per_node.values()])
        for m in snap:
            st = m.get("status") or {}
            if st.get("phase") == "Pending" and any(c["type"] == "WaitingForCapacity" and c["status"] == "True"
                                                    for c in st.get("conditions") or []):
                waited.add(m["metadata"]["name"])
    assert peak <= 5, peak
    assert peak_node <= 2, peak_node
    assert waited, "with 8 at once, some must have waited for capacity"
    assert peak >= 3  # they really ran concurrently

    final = {m["metadata"]["name"]: m["status"] for m in kube.list_all(MIGRATIONS, namespace)}
    assert all(s["phase"] == "Succeeded" for s in final.values()), {k: s.get("reason") for k, s in final.items()}
    for name, s in final.items():
        assert s["sourceNode"] == sources[name] != s["targetNode"]
        assert_runs_only_on(local_cluster, kube, namespace, s["targetNode"], f"vm{name[1:]}")
    # Oldest first: no Migration overtook an older one from the same source node that had to wait.
    admitted_at = {n: next(p["time"] for p in s["phaseTransitionTimestamps"] if p["phase"] == "Scheduling")
                   for n, s in final.items()}
    for a in final:
        for b in final:
            if a in waited and int(a[1:]) < int(b[1:]) and sources[a] == sources[b]:
                assert admitted_at[a] <= admitted_at[b], (a, b)


def test_metrics_health_and_readiness(kube: Any, kubectl: Any, namespace: str, local_cluster: Any) -> None:
    kubectl("create", "-f", "-", input=migration_yaml("ghost", "no-such-vm"))
    wait_for("ghost Failed", lambda: (kube.get(MIGRATIONS, "ghost", namespace).get("status") or {}).get("phase")
             == "Failed", timeout=30)
    text = wait_for("the failure counted", lambda: (lambda t: t if metric_value(
        t, "virtmigrate_migration_results_total", result="Failed", reason="VMNotFound") >= 1 else None)(
        controller_metrics(local_cluster)), timeout=30)
    assert metric_value(text, "virtmigrate_migrations", phase="Failed") >= 1
    assert metric_value(text, "workqueue_adds_total", name="migrations") >= 1
    assert metric_value(text, "workqueue_depth", name="migrations") >= 0
    assert metric_value(text, "reflector_lists_total", name="migrations") >= 1
    assert "virtmigrate_migration_phase_seconds_bucket" in text or "virtmigrate_migration_phase_seconds" in text
    assert "virtmigrate_controller_event_to_action_seconds_bucket" in text
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"{local_cluster.controller_metrics_url}{path}", timeout=5) as r:
            assert r.status == 200
