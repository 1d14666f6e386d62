"""The chaos campaign keeps the evidence of a violating round before the repair rebuilds it: the pool's
objects, the cluster's process logs, the node runner's pod folders and each libvirt host's daemon and domain
logs. Seed 21 round 100 violated an invariant, and the capture itself failed (it called the hosts list), taking
the round's verdict and the campaign with it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.chaos import faults
from tests.chaos.campaign import Campaign
from virtmigrate.local.libvirthosts import Host


def _host(root: Path, i: int) -> Host:
    h = Host(name=f"host{i}", index=i, tcp_port=16500 + i, migration_address=f"127.0.0.{9 + i}",
             migration_port_min=49152, migration_port_max=49215, host_uuid=f"00000000-0000-4000-8000-00000000000{i}",
             root=root / f"host{i}")
    h.qemu_log_dir.mkdir(parents=True)
    (h.root / "libvirtd.log").write_text(f"daemon log of host{i}\n")
    (h.qemu_log_dir / f"chaos-1_vm{i}.log").write_text(f"qemu log of vm{i}\n")
    return h


def _campaign(tmp_path: Path, logged: list[str]) -> Any:
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "controller.log").write_text("controller\n")
    (state / "pods" / "uid-1").mkdir(parents=True)
    (state / "pods" / "uid-1" / "agent.log").write_text("agent\n")
    hosts = [_host(tmp_path / "libvirt", i) for i in range(2)]
    lc = SimpleNamespace(state=state, kubeconfig=str(tmp_path / "kubeconfig"), hosts=SimpleNamespace(hosts=hosts))
    return SimpleNamespace(lc=lc, seed=21, namespace="chaos-1", log=logged.append)


def test_the_evidence_of_a_round_holds_objects_logs_pods_and_every_host(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def kubectl(lc: Any, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(args), 0, stdout=f"kind: List # {args[-3]}\n", stderr="")

    monkeypatch.setattr(faults, "kubectl", kubectl)
    logged: list[str] = []
    out = Campaign._keep_evidence(_campaign(tmp_path, logged), 100)  # type: ignore[arg-type]
    assert out == tmp_path / "state-evidence" / "seed21-round100"
    assert "migrations,vms,pods" in (out / "migrations-vms-pods.yaml").read_text()
    assert (out / "events.yaml").is_file()
    assert (out / "logs" / "controller.log").read_text() == "controller\n"
    assert (out / "pods" / "uid-1" / "agent.log").read_text() == "agent\n"
    for i in range(2):
        assert (out / f"host{i}-libvirtd.log").read_text() == f"daemon log of host{i}\n"
        assert (out / f"host{i}-qemu" / f"chaos-1_vm{i}.log").read_text() == f"qemu log of vm{i}\n"
    assert logged == [f"  evidence of round 100: {out}"]
