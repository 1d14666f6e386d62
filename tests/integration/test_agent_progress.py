"""The agent reports live progress into its Migration's status.progress on a real kube-apiserver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.integration.libvirt_fixtures import Guests, guests, libvirt_hosts, run_agent
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.kube.resources import MIGRATIONS
from virtmigrate.local.libvirthosts import LibvirtHosts

FIXTURES = (libvirt_hosts, guests)  # pytest finds fixtures by name in this module's namespace

pytestmark = [pytest.mark.integration, pytest.mark.libvirt, pytest.mark.timeout(120)]


def test_progress_is_patched_into_the_migration_status(
        cluster: Cluster, crds: None, kube: Any, namespace: str, libvirt_hosts: LibvirtHosts, guests: Guests,
        tmp_path: Path) -> None:
    g = guests.start(memory_mib=128, mode="rewrite")
    kube.create(MIGRATIONS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                             "metadata": {"name": "move-it"}, "spec": {"selector": {"name": g.name}}}, namespace)
    run = run_agent(libvirt_hosts, g.name, tmp_path,
                    extra=["--bandwidth", "64", "--allow-post-copy", "--migration", "move-it",
                           "--namespace", namespace, "--kubeconfig", str(cluster.kubeconfig)])
    assert run.returncode == ExitCode.SUCCEEDED, run.stderr
    status = kube.get(MIGRATIONS, "move-it", namespace)["status"]
    progress = status["progress"]
    # and its outcome, the claim its exit code makes, without waiting for a target (none asked for)
    assert status["agentOutcome"]["exitCode"] == ExitCode.SUCCEEDED
    assert progress["mode"] in ("pre-copy", "post-copy")
    assert progress["dataTotal"] >= 128 << 20 and 0 <= progress["percent"] <= 99
    assert progress["percentText"] == f"{progress['percent']}%" and progress["updateTime"].endswith("Z")


def test_without_api_access_the_agent_still_migrates(
        libvirt_hosts: LibvirtHosts, guests: Guests, tmp_path: Path) -> None:
    g = guests.start(memory_mib=32, mode="idle")
    run = run_agent(libvirt_hosts, g.name, tmp_path,
                    extra=["--migration", "move-it", "--namespace", "nowhere",
                           "--kubeconfig", str(tmp_path / "missing.kubeconfig"),
                           # 32 MiB at 8 MiB/s: long enough for the progress sender to start (after 1 s)
                           "--bandwidth", "8"])
    assert run.returncode == ExitCode.SUCCEEDED, run.stderr
    assert any(e.get("event") == "progress_disabled" for e in run.logs())
