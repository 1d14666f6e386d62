"""Helpers shared by the migration e2e tests (no tests here): VMs, Migrations, where a guest runs."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import domain_state, serial_lines, wait_for
from virtmigrate.api.constants import LABEL_VM
from virtmigrate.kube.resources import EVENTS, MIGRATIONS, PODS, VMS

NODES = ("node0", "node1", "node2")


def create_vm(kubectl: Any, kernel: Path, name: str = "testvm", *, node_selector: dict[str, str] | None = None,
              memory: str = "64Mi") -> None:
    spec: dict[str, Any] = {"running": True, "memory": memory, "kernel": str(kernel)}
    if node_selector:
        spec["nodeSelector"] = node_selector
    vm = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name}, "spec": spec}
    kubectl("apply", "-f", "-", input=json.dumps(vm))


def running_vm(kube: Any, kubectl: Any, ns: str, kernel: Path, lc: Any, name: str = "testvm",
               **kw: Any) -> dict[str, Any]:
    """Create a VM and wait until it runs and its guest beats; returns its status."""
    create_vm(kubectl, kernel, name, **kw)
    st: dict[str, Any] = wait_for(f"VM {name} Running", lambda: vm_status(kube, ns, name)
                                  if vm_status(kube, ns, name).get("phase") == "Running" else None, timeout=120)
    wait_for("guest heartbeat", lambda: serial_lines(lc, st["node"], f"{ns}_{name}") >= 1, timeout=60)
    return st


def vm_status(kube: Any, ns: str, name: str = "testvm") -> dict[str, Any]:
    out: dict[str, Any] = kube.get(VMS, name, ns).get("status") or {}
    return out


def migration_yaml(name: str = "testvm-migration", vm: str = "testvm", **spec: Any) -> str:
    body = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": {"name": name},
            "spec": {"selector": {"name": vm}, **spec}}
    return json.dumps(body)


def create_migration(kubectl: Any, name: str = "testvm-migration", vm: str = "testvm", **spec: Any) -> None:
    kubectl("create", "-f", "-", input=migration_yaml(name, vm, **spec))


def mig(kube: Any, ns: str, name: str = "testvm-migration") -> dict[str, Any] | None:
    from virtmigrate import errors
    try:
        out: dict[str, Any] = kube.get(MIGRATIONS, name, ns)
        return out
    except errors.NotFound:
        return None


def mig_phase(kube: Any, ns: str, name: str = "testvm-migration") -> str:
    m = mig(kube, ns, name)
    return str(((m or {}).get("status") or {}).get("phase") or "")


def wait_phase(kube: Any, ns: str, phases: tuple[str, ...], name: str = "testvm-migration",
               timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        m = mig(kube, ns, name)
        return m if m is not None and (m.get("status") or {}).get("phase") in phases else None
    out: dict[str, Any] = wait_for(f"Migration {name} in {phases}", check, timeout=timeout, interval=0.05)
    return out


def wait_gone(kube: Any, ns: str, name: str = "testvm-migration", timeout: float = 120) -> None:
    wait_for(f"Migration {name} deleted", lambda: mig(kube, ns, name) is None, timeout=timeout)


def pods(kube: Any, ns: str, vm: str = "testvm") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = kube.list_all(PODS, ns, label_selector=f"{LABEL_VM}={vm}")
    return out


def domains_on(lc: Any, ns: str, vm: str = "testvm") -> dict[str, str]:
    """node -> domain state, for nodes that have the VM's domain."""
    out = {}
    for n in NODES:
        s = domain_state(lc, n, f"{ns}_{vm}")
        if s:
            out[n] = s
    return out


def assert_runs_only_on(lc: Any, kube: Any, ns: str, node: str, vm: str = "testvm") -> None:
    """The guest runs on `node` and nowhere else, beats there, the VM says so, one launcher pod holds it."""
    assert domains_on(lc, ns, vm) == {node: "running"}
    before = serial_lines(lc, node, f"{ns}_{vm}")
    wait_for(f"heartbeats continuing on {node}", lambda: serial_lines(lc, node, f"{ns}_{vm}") >= before + 2,
             timeout=30)
    st = vm_status(kube, ns, vm)
    assert (st.get("phase"), st.get("node")) == ("Running", node)
    live = wait_for("only the VM's launcher pod left", lambda: (lambda p: p if len(p) == 1 else None)(
        [p for p in pods(kube, ns, vm) if not p["metadata"].get("deletionTimestamp")]), timeout=60)
    assert live[0]["metadata"]["name"] == st["launcherPod"]
    assert live[0]["spec"]["nodeName"] == node


def no_pods_left_but_launcher(kube: Any, ns: str, vm: str = "testvm") -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods(kube, ns, vm))


def events_for(kube: Any, ns: str, name: str) -> list[tuple[str, str]]:
    evs = kube.list_all(EVENTS, ns, field_selector=f"involvedObject.name={name}")
    evs.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [(e.get("reason", ""), e.get("message", "")) for e in evs]


def wait_events(kube: Any, ns: str, name: str, *reasons: str, timeout: float = 30) -> list[str]:
    """The reasons of `name`'s Events once every one of `reasons` is among them (Events are written
    asynchronously, after the phase they tell of: wait, bounded, never assert right away)."""
    return wait_for(f"Events {reasons} of {name}", lambda: (lambda got: got if all(r in got for r in reasons)
                    else None)([r for r, _ in events_for(kube, ns, name)]), timeout=timeout)


def controller_metrics(lc: Any) -> str:
    """The local cluster controller's /metrics (it serves it inside the cluster's metrics namespace)."""
    with urllib.request.urlopen(f"{lc.controller_metrics_url}/metrics", timeout=10) as r:
        return str(r.read().decode())


def metric_value(text: str, metric: str, /, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != metric:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return float("nan")
