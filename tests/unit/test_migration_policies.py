"""MigrationPolicy: which one selects a VM (namespace labels, VM labels, most specific, ties by name), how its
settings layer between the cluster defaults and the Migration's spec, and that the result is recorded in the
Migration's status at admission and is what the agent gets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_migration_sync import World, migration, phases, pod, target_name, vm
from virtmigrate.api.migration import Migration
from virtmigrate.api.policy import MigrationPolicyObject, select_policy
from virtmigrate.controller.migration.pods import PolicyDefaults
from virtmigrate.controller.migration.policies import configuration_from_status, effective_policy


def policy(name: str, *, ns: dict[str, str] | None = None, vm_labels: dict[str, str] | None = None,
           **spec: Any) -> dict[str, Any]:
    sel: dict[str, Any] = {}
    if ns:
        sel["namespaceSelector"] = ns
    if vm_labels:
        sel["vmSelector"] = vm_labels
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": name},
            "spec": {"selectors": sel, **spec}}


POLICIES = [MigrationPolicyObject.parse(p) for p in (
    policy("everyone"),
    policy("prod", ns={"env": "prod"}),
    policy("prod-db", ns={"env": "prod"}, vm_labels={"app": "db"}),
    policy("a-db", vm_labels={"app": "db"}),
    policy("b-db", vm_labels={"app": "db"}),
)]


@pytest.mark.parametrize(("ns_labels", "vm_labels", "chosen"), [
    pytest.param({}, {}, "everyone", id="empty-selector-matches-all"),
    pytest.param({"env": "prod"}, {}, "prod", id="namespace-labels"),
    pytest.param({"env": "dev"}, {"app": "db"}, "a-db", id="vm-labels-tie-broken-by-name"),
    pytest.param({"env": "prod"}, {"app": "db"}, "prod-db", id="most-specific-wins"),
    pytest.param({"env": "prod"}, {"app": "web"}, "prod", id="vm-selector-not-matched"),
])
def test_policy_selection(ns_labels: dict[str, str], vm_labels: dict[str, str], chosen: str) -> None:
    got = select_policy(POLICIES, ns_labels, vm_labels)
    assert got is not None and got.name == chosen


def test_no_policy_when_none_matches() -> None:
    assert select_policy(POLICIES[1:2], {"env": "dev"}, {}) is None


def test_layers_defaults_then_policy_then_the_migrations_spec() -> None:
    pol = MigrationPolicyObject.parse(policy("p", bandwidthMiBps=64, allowAutoConverge=True, maxDowntimeMs=800))
    mig = Migration.parse({"metadata": {"name": "m", "namespace": "ns"},
                           "spec": {"selector": {"name": "vm"}, "maxDowntimeMs": 300}})
    got = effective_policy(PolicyDefaults(), pol, mig)
    assert (got.bandwidth_mib_s, got.allow_auto_converge, got.max_downtime_ms) == (64, True, 300)
    assert got.completion_timeout_per_gib_s == PolicyDefaults().completion_timeout_per_gib_s


def test_admission_records_the_policy_and_the_configuration_and_the_agent_gets_it() -> None:
    w = World()
    w.vms.add({**vm(), "metadata": {**vm()["metadata"], "labels": {"app": "db"}}})
    w.migrations.add(migration())
    w.sync.listers = w.sync.observer.listers = type(w.sync.listers)(
        w.migrations, w.vms, w.pods, w.nodes, policies=_store(policy("dbs", vm_labels={"app": "db"},
                                                                     bandwidthMiBps=64, allowPostCopy=True)),
        namespaces=_store({"metadata": {"name": "default", "labels": {}}}))
    [(_, _, _, _, body)] = w.run()
    status = body["status"]
    assert status["phase"] == "Scheduling" and status["migrationPolicy"] == "dbs"
    assert status["migrationConfiguration"]["bandwidthMiBps"] == 64
    assert status["migrationConfiguration"]["allowPostCopy"] is True
    assert configuration_from_status(status) == PolicyDefaults(bandwidth_mib_s=64, allow_post_copy=True)

    # Later the policy changes: the agent still gets what was recorded at admission.
    w.sync.listers = w.sync.observer.listers = type(w.sync.listers)(w.migrations, w.vms, w.pods, w.nodes)
    w.migrations.add(migration(**{**status, "phase": "TargetReady", "targetNode": "node1",
                                  "phaseTransitionTimestamps": phases("Pending", "Scheduling", "Scheduled",
                                                                      "TargetReady")}))
    w.pods.add(pod(target_name(w), "node1", phase="Running", ready=True))
    w.run()
    args = w.writer.last_created["spec"]["containers"][0]["args"]
    assert "--bandwidth=64" in args and "--allow-post-copy=true" in args


def _store(*objs: dict[str, Any]) -> Any:
    from virtmigrate.informer.store import Store

    s = Store()
    for o in objs:
        s.add(o)
    return s
