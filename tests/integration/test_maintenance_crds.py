"""The node-maintenance API on the real kube-apiserver through the real kubectl: VM spec.evictionStrategy
(documented, validated) and the cluster-scoped MigrationPolicy."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]


def test_explain_documents_the_eviction_strategy(kubectl: Kubectl, tmp_path: Path) -> None:
    # A fresh discovery cache: ~/.kube/cache may hold an earlier cluster's on the same port (issue 11).
    out = kubectl(f"--cache-dir={tmp_path}", "explain", "vm.spec.evictionStrategy")
    for words in ("LiveMigrate", "LiveMigrateIfPossible", "PodDisruptionBudget", "None (the default)",
                  "kubectl drain"):
        assert words in " ".join(out.split()), out
    status = " ".join(kubectl(f"--cache-dir={tmp_path}", "explain", "vm.status.evacuation").split())
    assert "released" in status and "uncordoned" in status


def test_an_unknown_eviction_strategy_is_rejected_naming_the_values(kubectl: Kubectl) -> None:
    vm = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": "bad"},
          "spec": {"memory": "64Mi", "evictionStrategy": "Migrate"}}
    proc = kubectl.run("create", "-f", "-", input=json.dumps(vm), check=False)
    assert proc.returncode != 0
    assert 'spec.evictionStrategy: Unsupported value: "Migrate"' in proc.stderr
    assert '"LiveMigrate", "LiveMigrateIfPossible", "None"' in proc.stderr


def test_migration_policies_are_cluster_scoped_and_explained(kubectl: Kubectl, tmp_path: Path) -> None:
    name = f"p-{uuid.uuid4().hex[:6]}"
    pol = {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": name},
           "spec": {"selectors": {"namespaceSelector": {"env": "prod"}, "vmSelector": {"app": "db"}},
                    "bandwidthMiBps": 64, "allowAutoConverge": True}}
    try:
        assert kubectl("create", "-f", "-", input=json.dumps(pol), namespaced=False).strip() == (
            f"migrationpolicy.migrations.kubevirt.io/{name} created")
        row = kubectl("get", "migrationpolicies", name, "--no-headers", namespaced=False).split()
        assert row[:3] == [name, '{"env":"prod"}', '{"app":"db"}']
        explained = kubectl(f"--cache-dir={tmp_path}", "explain", "migrationpolicy", namespaced=False)
        assert "most specific wins" in " ".join(explained.split())
    finally:
        kubectl.run("delete", "migrationpolicy", name, "--ignore-not-found", namespaced=False, check=False)
