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
from virtmigrate.controller.policy import PolicyLimits


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
    got = effective_policy(PolicyDefaults(), pol, mig).settings
    assert (got.bandwidth_mib_s, got.allow_auto_converge, got.max_downtime_ms) == (64, True, 300)
    assert got.completion_timeout_per_gib_s == PolicyDefaults().completion_timeout_per_gib_s


LIMITS = PolicyLimits(min_bandwidth_mib_s=5, max_bandwidth_mib_s=100, max_downtime_ms=1000,
                      max_progress_timeout_s=60, permit_post_copy=False, permit_pause=False)


def _mig(**spec: Any) -> Migration:
    return Migration.parse({"metadata": {"name": "m", "namespace": "ns"}, "spec": {"selector": {"name": "vm"}, **spec}})


@pytest.mark.parametrize(("policy_spec", "field", "used", "said"), [
    pytest.param({"bandwidthMiBps": 500}, "bandwidth_mib_s", 100, "bandwidthMiBps 500 MiB/s exceeds the cluster's "
                 "cap of 100 MiB/s (--limit-bandwidth-max): 100 MiB/s used", id="bandwidth-over-cap"),
    pytest.param({"bandwidthMiBps": 0}, "bandwidth_mib_s", 100, "bandwidthMiBps 0 (unlimited) exceeds", id="unlimited"),
    pytest.param({"bandwidthMiBps": 2}, "bandwidth_mib_s", 5, "below the cluster's floor of 5 MiB/s", id="under-floor"),
    pytest.param({"maxDowntimeMs": 5000}, "max_downtime_ms", 1000, "maxDowntimeMs 5000 ms exceeds the cluster's "
                 "limit of 1000 ms (--limit-max-downtime): 1000 ms used", id="downtime"),
    pytest.param({"progressTimeout": 61}, "progress_timeout_s", 60, "--limit-progress-timeout", id="progress"),
    pytest.param({"allowPostCopy": True}, "allow_post_copy", False, "allowPostCopy is not permitted", id="post-copy"),
    pytest.param({"allowPause": True}, "allow_pause", False, "allowPause is not permitted", id="pause"),
])
def test_a_policy_beyond_the_cluster_limits_is_clamped_naming_policy_field_and_limit(
        policy_spec: dict[str, Any], field: str, used: object, said: str) -> None:
    got = effective_policy(PolicyDefaults(), MigrationPolicyObject.parse(policy("wide", **policy_spec)), _mig(),
                           limits=LIMITS)
    assert getattr(got.settings, field) == used
    assert got.policy_name == "wide"
    [note] = got.clamped
    assert note.startswith("MigrationPolicy wide: ") and said in note, note


def test_a_policy_within_the_limits_and_a_spec_overriding_a_policy_beyond_them_clamp_nothing() -> None:
    within = MigrationPolicyObject.parse(policy("ok", bandwidthMiBps=100, maxDowntimeMs=1000, allowAutoConverge=True))
    got = effective_policy(PolicyDefaults(), within, _mig(), limits=LIMITS)
    assert (got.settings.bandwidth_mib_s, got.settings.max_downtime_ms, got.clamped) == (100, 1000, ())
    # The spec overrides the policy's excess: the policy's value never reaches the agent, so nothing is clamped.
    wide = MigrationPolicyObject.parse(policy("wide", bandwidthMiBps=500, maxDowntimeMs=5000))
    got = effective_policy(PolicyDefaults(), wide, _mig(bandwidthMiBps=50), limits=LIMITS)
    assert (got.settings.bandwidth_mib_s, got.settings.max_downtime_ms) == (50, 1000)
    assert len(got.clamped) == 1 and "maxDowntimeMs" in got.clamped[0]
    # No limits configured: the policy is taken as it is.
    assert effective_policy(PolicyDefaults(), wide, _mig()).settings.bandwidth_mib_s == 500


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
