"""sync(key) against preloaded caches: the exact API actions it takes (sample-controller style).

The fake writer records every write; nothing talks to an API server. Each test preloads the stores
with the state a real cluster would show at one moment and checks the single step sync takes.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.clock import FakeClock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import RecordingEventRecorder
from virtmigrate.controller.indexes import MIGRATION_VM_INDEX, POD_VM_INDEX, index_migration_by_vm, index_pod_by_vm
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.capacity import Limits
from virtmigrate.controller.migration.execute import Listers, MigrationSync
from virtmigrate.informer.store import Store

JSON = dict[str, Any]
FIN = "virtmigrate.kubevirt.io/cancel"
NOW = dt.datetime(2026, 1, 1, 0, 10, 0, tzinfo=dt.UTC)
T_ISO = "2026-01-01T00:09:00.000000Z"


class FakeWriter:
    def __init__(self) -> None:
        self.actions: list[tuple[Any, ...]] = []
        self.fail_create_with: type[errors.KubeError] | None = None
        self.fail_patch_with: type[errors.KubeError] | None = None
        self.existing: set[tuple[str, str | None, str]] = set()  # (plural, namespace, name) that GET finds

    def get(self, res: Any, name: str, namespace: str | None = None) -> JSON:
        self.actions.append(("get", res.plural, namespace, name))
        if (res.plural, namespace, name) not in self.existing:
            raise errors.NotFound(f"{res.plural} {name} not found")
        return {"metadata": {"name": name, "namespace": namespace}}

    def create(self, res: Any, obj: JSON, namespace: str | None = None) -> JSON:
        self.actions.append(("create", res.plural, namespace, obj["metadata"]["name"]))
        self.last_created = obj
        if self.fail_create_with:
            raise self.fail_create_with("exists")
        return obj

    def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = "") -> JSON:
        self.actions.append(("patch", res.plural + (f"/{subresource}" if subresource else ""), namespace, name, patch))
        if self.fail_patch_with:
            raise self.fail_patch_with("stale")
        return {}

    def delete(self, res: Any, name: str, namespace: str | None = None, *, grace_period_seconds: int | None = None,
               uid: str | None = None, propagation_policy: str | None = None) -> JSON:
        self.actions.append(("delete", res.plural, namespace, name))
        return {}


def node(name: str, zone: str, port: int) -> JSON:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone,
                                                  "zone": zone},
                         "annotations": {"virtmigrate.kubevirt.io/libvirt-uri": f"qemu+tcp://127.0.0.1:{port}/system",
                                         "virtmigrate.kubevirt.io/migration-address": f"127.0.0.{port - 16590}"}},
            "status": {"allocatable": {"memory": "4Gi", "cpu": "2"}}}


def vm(name: str = "testvm", node_name: str = "node0", **status: Any) -> JSON:
    st = {"phase": "Running", "node": node_name, "launcherPod": f"virt-launcher-{name}-aaaaa", **status}
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
            "metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid", "resourceVersion": "7"},
            "spec": {"running": True, "memory": "64Mi"}, "status": st}


def migration(name: str = "testvm-migration", vm_name: str = "testvm", *, finalizer: bool = True,
              created: str = "2026-01-01T00:00:00Z", **status: Any) -> JSON:
    meta: JSON = {"name": name, "namespace": "default", "uid": f"{name}-uid", "resourceVersion": "42",
                  "creationTimestamp": created}
    if finalizer:
        meta["finalizers"] = [FIN]
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": meta,
            "spec": {"selector": {"name": vm_name}}, "status": status}


def pod(name: str, node_name: str = "", *, role: str = "launcher", vm_name: str = "testvm", phase: str = "Pending",
        ready: bool = False, exit_code: int | None = None, message: str = "", deleting: bool = False) -> JSON:
    status: JSON = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "c", "state": {"terminated": {"exitCode": exit_code,
                                                                              "message": message}}}]
    meta: JSON = {"name": name, "namespace": "default",
                  "labels": {"virtmigrate.kubevirt.io/vm": vm_name, "virtmigrate.kubevirt.io/role": role}}
    if deleting:
        meta["deletionTimestamp"] = T_ISO
    spec: JSON = {"nodeName": node_name} if node_name else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


class World:
    def __init__(self, *, limits: Limits | None = None, agent_service_account: str = "") -> None:
        self.migrations = Store({MIGRATION_VM_INDEX: index_migration_by_vm})
        self.vms = Store()
        self.pods = Store({POD_VM_INDEX: index_pod_by_vm})
        self.nodes = Store()
        for i, zone in enumerate(("a", "b", "b")):
            self.nodes.add(node(f"node{i}", zone, 16601 + i))
        self.writer = FakeWriter()
        self.recorder = RecordingEventRecorder()
        self.clock = FakeClock(wall_start=NOW)
        self.sync = MigrationSync(Listers(self.migrations, self.vms, self.pods, self.nodes), self.writer,
                                  config=ControllerConfig(limits=limits or Limits(),
                                                         agent_service_account=agent_service_account),
                                  clock=self.clock,
                                  recorder=self.recorder, metrics=MigrationMetrics(CollectorRegistry()))

    def run(self, key: str = "default/testvm-migration") -> list[tuple[Any, ...]]:
        self.writer.actions.clear()
        self.sync.sync(key)
        return self.writer.actions


def phases(*names: str) -> list[JSON]:
    return [{"phase": n, "time": T_ISO} for n in names]


def target_name(w: World) -> str:
    from virtmigrate.api.migration import Migration
    from virtmigrate.api.vm import VM
    from virtmigrate.controller.migration.pods import target_pod_name

    m = w.migrations.get_by_key("default/testvm-migration")
    v = w.vms.get_by_key("default/testvm")
    assert m and v
    return target_pod_name(Migration.parse(m), VM.parse(v))


def test_new_migration_gets_the_finalizer_first() -> None:
    w = World()
    w.vms.add(vm())
    w.migrations.add(migration(finalizer=False))
    assert w.run() == [("patch", "migrations", "default", "testvm-migration",
                        {"metadata": {"resourceVersion": "42", "finalizers": [FIN]}})]


def test_then_pending_and_scheduling_in_one_write_when_capacity_allows() -> None:
    w = World()
    w.vms.add(vm())
    w.migrations.add(migration())
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    assert [p["phase"] for p in body["status"]["phaseTransitionTimestamps"]] == ["Pending", "Scheduling"]
    assert [e[2] for e in w.recorder.events] == ["Pending", "Scheduling"]


def test_new_migration_without_capacity_enters_pending_with_condition() -> None:
    w = World(limits=Limits(max_running=1))
    w.vms.add(vm())
    w.vms.add(vm("other", "node1"))
    w.migrations.add(migration("busy", "other", phase="Running", sourceNode="node1"))
    w.migrations.add(migration())
    [(_, _, _, _, body)] = w.run()
    s = body["status"]
    assert s["phase"] == "Pending"
    assert s["conditions"][0]["type"] == "WaitingForCapacity"
    assert s["conditions"][0]["message"].startswith("1 migrations are running in the cluster (limit 1)")


def test_admit_records_source_and_children() -> None:
    w = World()
    w.vms.add(vm())
    w.migrations.add(migration(phase="Pending", phaseTransitionTimestamps=phases("Pending")))
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["sourceNode"], s["targetPod"]) == ("Scheduling", "node0", target_name(w))
    assert s["agentPod"].startswith("virt-migration-testvm-migration-")


def test_scheduling_marks_vm_then_creates_target_pod() -> None:
    w = World()
    w.vms.add(vm())
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Scheduling")))
    [(verb, res, ns, name, body)] = w.run()
    assert (verb, res, ns, name) == ("patch", "vms/status", "default", "testvm")
    assert body["metadata"] == {"resourceVersion": "7"}
    assert body["status"]["phase"] == "Migrating"
    assert body["status"]["migrationState"]["migrationUID"] == "testvm-migration-uid"
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid", "completed": False}))
    assert w.run() == [("create", "pods", "default", target_name(w))]
    created = w.writer.last_created
    terms = created["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node0"]} in \
        terms["nodeSelectorTerms"][0]["matchExpressions"]


def test_create_is_idempotent_on_already_exists() -> None:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid"}))
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Scheduling")))
    w.writer.fail_create_with = errors.AlreadyExists
    assert w.run() == [("create", "pods", "default", target_name(w))]  # no exception: a normal retry


def _running_world(agent: JSON | None, *, deleting: bool = False, phase: str = "Running") -> World:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid", "completed": False}))
    m = migration(phase=phase, sourceNode="node0", targetNode="node1",
                  phaseTransitionTimestamps=phases("Pending", "Scheduling", "Scheduled", "TargetReady", "Running"))
    if deleting:
        m["metadata"]["deletionTimestamp"] = T_ISO
    w.migrations.add(m)
    w.pods.add(pod("virt-launcher-testvm-aaaaa", "node0", phase="Running", ready=True))
    w.pods.add(pod(target_name(w), "node1", phase="Running", ready=True))
    m2 = copy.deepcopy(m)
    m2["status"]["targetPod"] = target_name(w)
    w.migrations.add(m2)
    if agent is not None:
        w.pods.add(agent)
    return w


def agent_name(w: World) -> str:
    from virtmigrate.api.migration import Migration
    from virtmigrate.controller.migration.pods import agent_pod_name

    m = w.migrations.get_by_key("default/testvm-migration")
    assert m
    return agent_pod_name(Migration.parse(m))


def test_target_ready_creates_agent_on_source_with_destination_from_node() -> None:
    w = _running_world(None, phase="TargetReady")
    assert w.run() == [("create", "pods", "default", agent_name(w))]
    spec = w.writer.last_created["spec"]
    assert spec["nodeName"] == "node0"
    assert "--destination-uri=qemu+tcp://127.0.0.1:16602/system" in spec["containers"][0]["args"]
    assert "--migration-uri=tcp://127.0.0.12" in spec["containers"][0]["args"]


def test_agent_success_sets_succeeded_with_result() -> None:
    w = _running_world(None)
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0,
                   message='{"outcome": "SUCCEEDED", "duration_s": 1.25, "downtime_ms": 40, "data_processed": 100}'))
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Succeeded", "Migrated")
    assert s["result"] == {"exitCode": 0, "outcome": "SUCCEEDED", "durationSeconds": 1.25, "downtimeMs": 40,
                           "dataProcessed": 100}


def test_agent_that_exited_before_seen_running_gives_running_and_succeeded_in_one_write() -> None:
    w = _running_world(None, phase="TargetReady")
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0,
                   message='{"outcome": "SUCCEEDED", "duration_s": 1.25}'))
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Succeeded", "Migrated")
    assert [p["phase"] for p in s["phaseTransitionTimestamps"]][-2:] == ["Running", "Succeeded"]
    assert [(reason, etype) for _, etype, reason, _ in w.recorder.events] == [("Running", "Normal"),
                                                                              ("Succeeded", "Normal")]


def test_target_bound_and_ready_gives_scheduled_and_target_ready_in_one_write() -> None:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid", "completed": False}))
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0",
                               phaseTransitionTimestamps=phases("Pending", "Scheduling")))
    w.pods.add(pod(target_name(w), "node1", phase="Running", ready=True))
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["targetNode"]) == ("TargetReady", "node1")
    assert [p["phase"] for p in s["phaseTransitionTimestamps"]] == ["Pending", "Scheduling", "Scheduled",
                                                                     "TargetReady"]
    assert [reason for _, _, reason, _ in w.recorder.events] == ["Scheduled", "TargetReady"]


def test_success_cleanup_sequence() -> None:
    w = _running_world(None, phase="Succeeded")
    w.pods.add(pod("placeholder", role="other"))
    agent = pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0)
    w.pods.add(agent)
    assert w.run() == [("delete", "pods", "default", agent_name(w))]
    w.pods.delete(agent)
    [(verb, res, _, name, body)] = w.run()
    assert (verb, res, name) == ("patch", "vms/status", "testvm")
    assert (body["status"]["node"], body["status"]["launcherPod"], body["status"]["phase"]) == \
        ("node1", target_name(w), "Running")
    w.vms.add(vm(node_name="node1", launcherPod=target_name(w),
                 migrationState={"migrationUID": "testvm-migration-uid", "completed": True}))
    assert w.run() == [("delete", "pods", "default", "virt-launcher-testvm-aaaaa")]
    w.pods.delete_key("default/virt-launcher-testvm-aaaaa")
    assert w.run() == [("patch", "migrations", "default", "testvm-migration",
                        {"metadata": {"resourceVersion": "42", "finalizers": []}})]


def test_cancel_while_running_stops_the_agent() -> None:
    w = _running_world(pod("x", role="agent"), deleting=True)
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Running"))
    assert w.run() == [("delete", "pods", "default", agent_name(w))]
    assert w.recorder.events[-1][2] == "Cancelling"


def test_cancel_agent_reports_cancelled_then_vm_back_on_source() -> None:
    w = _running_world(None, deleting=True)
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Failed", exit_code=23, deleting=True))
    [(_, _, _, _, body)] = w.run()
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "Cancelled")


def test_cancel_completed_just_before_is_a_success() -> None:
    w = _running_world(None, deleting=True)
    w.sync.remember_agent_exit("default/testvm-migration", 0, '{"outcome": "SUCCEEDED"}')
    [(_, _, _, _, body)] = w.run()
    assert body["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize("phase", ["Scheduling", "Scheduled", "TargetReady"])
def test_cancel_before_agent_fails_as_cancelled(phase: str) -> None:
    w = _running_world(None, deleting=True, phase=phase)
    [(_, res, _, _, body)] = w.run()
    assert res == "migrations/status"
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "Cancelled")


def test_contradiction_fails_naming_the_key() -> None:
    w = World()
    v = vm()
    v["spec"]["nodeSelector"] = {"zone": "a"}
    w.vms.add(v)
    m = migration(phase="Pending", phaseTransitionTimestamps=phases("Pending"))
    m["spec"]["nodeSelector"] = {"zone": "b"}
    w.migrations.add(m)
    [(_, _, _, _, body)] = w.run()
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "ConstraintContradiction")
    assert "zone" in body["status"]["message"] and "testvm" in body["status"]["message"]
    assert w.recorder.events[-1][1:3] == ("Warning", "ConstraintContradiction")


def test_second_migration_for_a_busy_vm_fails() -> None:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "first-uid", "completed": False}))
    first = migration("first", phase="Running", sourceNode="node0")
    first["metadata"]["uid"] = "first-uid"
    w.migrations.add(first)
    w.migrations.add(migration("second", created="2026-01-01T00:05:00Z"))
    [(_, _, _, _, body)] = w.run("default/second")
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "VMBusy")
    assert "'first'" in body["status"]["message"]


def test_missing_vm_fails_naming_it() -> None:
    w = World()
    w.migrations.add(migration(vm_name="nope"))
    [(_, _, _, _, body)] = w.run()
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "VMNotFound")
    assert "'nope'" in body["status"]["message"]


def test_capacity_holds_with_eight_and_a_stale_cache() -> None:
    w = World(limits=Limits(max_running=5, max_per_node=2))
    for i in range(8):
        w.vms.add(vm(f"vm{i}", f"node{i % 4}"))
        w.migrations.add(migration(f"m{i}", f"vm{i}", created=f"2026-01-01T00:00:0{i}Z", phase="Pending",
                                   phaseTransitionTimestamps=phases("Pending")))
    admitted = []
    for i in range(8):  # the cache never catches up: only the controller's own memory prevents over-admission
        acts = w.run(f"default/m{i}")
        if acts and acts[0][4]["status"].get("phase") == "Scheduling":
            admitted.append(f"m{i}")
        elif acts:
            assert acts[0][4]["status"]["conditions"][0]["type"] == "WaitingForCapacity"
    assert admitted == ["m0", "m1", "m2", "m3", "m4"]


def test_an_admission_that_was_not_written_frees_its_slot() -> None:
    w = World(limits=Limits(max_running=1, max_per_node=1))
    for i in range(2):
        w.vms.add(vm(f"vm{i}", f"node{i}"))
        w.migrations.add(migration(f"m{i}", f"vm{i}", created=f"2026-01-01T00:00:0{i}Z", phase="Pending",
                                   phaseTransitionTimestamps=phases("Pending")))
    w.writer.fail_patch_with = errors.Conflict
    with pytest.raises(errors.Conflict):
        w.run("default/m0")
    w.writer.fail_patch_with = None
    w.migrations.delete_key("default/m0")  # m0 went away: its failed admission must not hold the only slot
    [(_, _, _, _, body)] = w.run("default/m1")
    assert body["status"]["phase"] == "Scheduling"


def test_limits_that_cannot_bind_admit_without_waiting() -> None:
    w = World(limits=Limits(max_running=3, max_per_node=3))
    for i in range(3):
        w.vms.add(vm(f"vm{i}", "node0"))
        w.migrations.add(migration(f"m{i}", f"vm{i}", created=f"2026-01-01T00:00:0{i}Z", phase="Pending",
                                   phaseTransitionTimestamps=phases("Pending")))
    for i in range(3):
        [(_, _, _, _, body)] = w.run(f"default/m{i}")
        assert body["status"]["phase"] == "Scheduling"
    w.vms.add(vm("vm3", "node0"))
    w.migrations.add(migration("m3", "vm3", created="2026-01-01T00:00:03Z", phase="Pending",
                               phaseTransitionTimestamps=phases("Pending")))
    [(_, _, _, _, body)] = w.run("default/m3")
    assert body["status"]["conditions"][0]["type"] == "WaitingForCapacity"


def test_deleted_migration_is_a_quiet_no_op() -> None:
    w = World()
    assert w.run("default/gone") == []


@pytest.mark.parametrize("exists", [pytest.param(True, id="sa-exists"), pytest.param(False, id="sa-missing")])
def test_agent_gets_its_service_account_only_where_it_exists(exists: bool) -> None:
    w = _running_world(None, phase="TargetReady")
    w.sync.config = ControllerConfig(agent_service_account="virtmigrate-agent")
    if exists:
        w.writer.existing.add(("serviceaccounts", "default", "virtmigrate-agent"))
    assert w.run() == [("get", "serviceaccounts", "default", "virtmigrate-agent"),
                       ("create", "pods", "default", agent_name(w))]
    spec = w.writer.last_created["spec"]
    assert spec.get("serviceAccountName", "") == ("virtmigrate-agent" if exists else "")
    warnings = [e for e in w.recorder.events if "AgentWithoutAPIAccess" in str(e)]
    assert bool(warnings) is (not exists)
