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
from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN, DomainFacts, DomainState, Job, LauncherMode
from virtmigrate.clock import FakeClock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import RecordingEventRecorder
from virtmigrate.controller.indexes import (
    MIGRATION_VM_INDEX,
    POD_MIGRATION_INDEX,
    POD_VM_INDEX,
    index_migration_by_vm,
    index_pod_by_migration,
    index_pod_by_vm,
)
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.active import ACTIVE_INDEXERS
from virtmigrate.controller.migration.capacity import Limits
from virtmigrate.controller.migration.decide import Timeouts
from virtmigrate.controller.migration.execute import Listers, MigrationSync
from virtmigrate.informer.store import Store

JSON = dict[str, Any]
FIN = "virtmigrate.kubevirt.io/cancel"
NOW = dt.datetime(2026, 1, 1, 0, 10, 0, tzinfo=dt.UTC)
T_ISO = "2026-01-01T00:09:00.000000Z"
AGENT_FIN = "virtmigrate.kubevirt.io/agent-outcome"
# What the launchers report of their nodes (virtmigrate.api.domainfacts), as annotations on their pods.
RUNS = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True, mode=LauncherMode.HOLD)
WAITS = DomainFacts(reachable=True, mode=LauncherMode.WAITING)
NONE_HERE = DomainFacts(reachable=True, mode=LauncherMode.EXITING)
JOB_OUT = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, job=Job.OUT, mode=LauncherMode.HOLD)
JOB_IN = DomainFacts(reachable=True, present=True, state=DomainState.PAUSED, job=Job.IN, mode=LauncherMode.WAITING)
# The identities the controller makes in a namespace before its first pod there (controller/identities.py).
IDENTITIES = [("create", "serviceaccounts", "default", "virtmigrate-launcher"),
              ("create", "rolebindings", "default", "virtmigrate-launcher"),
              ("create", "serviceaccounts", "default", "virtmigrate-agent"),
              ("create", "rolebindings", "default", "virtmigrate-agent")]


class FakeWriter:
    def __init__(self) -> None:
        self.actions: list[tuple[Any, ...]] = []
        self.fail_create_with: type[errors.KubeError] | None = None  # for pods only
        self.deleted_with_grace: dict[str, int | None] = {}  # pod name -> grace_period_seconds of its delete
        self.fail_patch_with: type[errors.KubeError] | None = None
        self.existing: set[tuple[str, str | None, str]] = set()  # (plural, namespace, name) that GET finds

    def get(self, res: Any, name: str, namespace: str | None = None) -> JSON:
        self.actions.append(("get", res.plural, namespace, name))
        if (res.plural, namespace, name) not in self.existing:
            raise errors.NotFound(f"{res.plural} {name} not found")
        return {"metadata": {"name": name, "namespace": namespace}}

    def create(self, res: Any, obj: JSON, namespace: str | None = None) -> JSON:
        self.actions.append(("create", res.plural, namespace, obj["metadata"]["name"]))
        if res.plural != "pods":
            return obj
        self.last_created = obj
        if self.fail_create_with:
            raise self.fail_create_with(f"pods {obj['metadata']['name']}: refused")
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
        self.deleted_with_grace[name] = grace_period_seconds
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
        ready: bool = False, exit_code: int | None = None, message: str = "", deleting: bool = False,
        domain: DomainFacts | None = None, finished: str = "", finalizers: tuple[str, ...] = (),
        owner_uid: str = "") -> JSON:
    status: JSON = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if exit_code is not None:
        term: JSON = {"exitCode": exit_code, "message": message}
        if finished:
            term["finishedAt"] = finished
        status["containerStatuses"] = [{"name": "c", "state": {"terminated": term}}]
    meta: JSON = {"name": name, "namespace": "default", "uid": f"{name}-uid",
                  "labels": {"virtmigrate.kubevirt.io/vm": vm_name, "virtmigrate.kubevirt.io/role": role}}
    if deleting:
        meta["deletionTimestamp"] = T_ISO
    if domain is not None:
        meta["annotations"] = {ANNOTATION_DOMAIN: domain.to_annotation()}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                                    "name": "testvm-migration", "uid": owner_uid, "controller": True}]
    spec: JSON = {"nodeName": node_name} if node_name else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


class World:
    def __init__(self, *, limits: Limits | None = None, agent_service_account: str = "") -> None:
        self.migrations = Store({MIGRATION_VM_INDEX: index_migration_by_vm, **ACTIVE_INDEXERS})
        self.vms = Store()
        self.pods = Store({POD_VM_INDEX: index_pod_by_vm, POD_MIGRATION_INDEX: index_pod_by_migration})
        self.nodes = Store()
        for i, zone in enumerate(("a", "b", "b")):
            self.nodes.add(node(f"node{i}", zone, 16601 + i))
        self.writer = FakeWriter()
        self.recorder = RecordingEventRecorder()
        self.clock = FakeClock(wall_start=NOW)
        self.registry = CollectorRegistry()
        self.sync = MigrationSync(Listers(self.migrations, self.vms, self.pods, self.nodes), self.writer,
                                  config=ControllerConfig(limits=limits or Limits(),
                                                         agent_service_account=agent_service_account),
                                  clock=self.clock,
                                  recorder=self.recorder, metrics=MigrationMetrics(self.registry))

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
    assert [e[2] for e in w.recorder.events] == ["Scheduling"]  # admitted at once: Pending has no Event


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
    # the pods' identities first (the launcher reports its domain under its own ServiceAccount), then the pod
    assert w.run() == [*IDENTITIES, ("create", "pods", "default", target_name(w))]
    created = w.writer.last_created
    terms = created["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node0"]} in \
        terms["nodeSelectorTerms"][0]["matchExpressions"]


def test_create_is_idempotent_on_already_exists() -> None:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid"}))
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Scheduling")))
    w.writer.fail_create_with = errors.AlreadyExists
    assert w.run() == [*IDENTITIES, ("create", "pods", "default", target_name(w))]  # no exception: a normal retry
    assert w.run() == [("create", "pods", "default", target_name(w))]  # identities are ensured once a namespace
    assert w.sync.sync("default/testvm-migration") is not None
    assert [e for e in w.recorder.events if e[1] == "Warning"] == []  # and the Migration does not fail


@pytest.mark.parametrize("refusal", [pytest.param(errors.Invalid, id="invalid"),
                                     pytest.param(errors.Forbidden, id="forbidden")])
def test_a_pod_the_api_server_refuses_fails_the_migration(refusal: type[errors.KubeError]) -> None:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid"}))
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Scheduling")))
    w.writer.fail_create_with = refusal
    [*_, (verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Failed", "PodRejected")
    assert target_name(w) in s["message"] and "refused" in s["message"]  # the server's own words
    # Its identities may be what was missing (a deleted ServiceAccount): they are made again next time.
    w.writer.fail_create_with = None
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Scheduling")))
    assert w.run()[:4] == IDENTITIES


def _running_world(agent: JSON | None, *, deleting: bool = False, phase: str = "Running",
                   guest: str = "source") -> World:
    """A Migration in `phase` whose launchers report the guest: on the "source" (the target waits), "moving"
    (a job runs), or on the "target" (the source's launcher exited as the guest left by migration)."""
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid", "completed": False}))
    m = migration(phase=phase, sourceNode="node0", targetNode="node1",
                  phaseTransitionTimestamps=phases("Pending", "Scheduling", "Scheduled", "TargetReady", "Running"))
    if deleting:
        m["metadata"]["deletionTimestamp"] = T_ISO
    w.migrations.add(m)
    if guest == "target":
        w.pods.add(pod("virt-launcher-testvm-aaaaa", "node0", phase="Succeeded", exit_code=0,
                       message="Migrated: domain default_testvm left by migration", domain=NONE_HERE))
    else:
        w.pods.add(pod("virt-launcher-testvm-aaaaa", "node0", phase="Running", ready=True,
                       domain=JOB_OUT if guest == "moving" else RUNS))
    w.pods.add(pod(target_name(w), "node1", phase="Running", ready=guest == "target",
                   domain={"target": RUNS, "moving": JOB_IN}.get(guest, WAITS)))
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
    assert w.run() == [*IDENTITIES, ("create", "pods", "default", agent_name(w))]
    spec = w.writer.last_created["spec"]
    assert spec["nodeName"] == "node0"
    assert w.writer.last_created["metadata"]["finalizers"] == [AGENT_FIN]  # its outcome outlives a deletion
    [(_, _, reason, message)] = w.recorder.events
    assert reason == "AgentCreated" and "from node node0 to node node1" in message
    assert "--destination-uri=qemu+tcp://127.0.0.1:16602/system" in spec["containers"][0]["args"]
    assert "--migration-uri=tcp://127.0.0.12" in spec["containers"][0]["args"]


def test_agent_success_sets_succeeded_with_result() -> None:
    w = _running_world(None, guest="target")
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0,
                   message='{"outcome": "succeeded", "durationSeconds": 1.25, "downtimeMs": 40, "dataProcessed": 100}'))
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Succeeded", "Migrated")
    assert s["result"] == {"exitCode": 0, "outcome": "succeeded", "durationSeconds": 1.25, "downtimeMs": 40,
                           "dataProcessed": 100}


def test_agent_that_exited_before_seen_running_gives_running_and_succeeded_in_one_write() -> None:
    w = _running_world(None, phase="TargetReady", guest="target")
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0,
                   message='{"outcome": "succeeded", "durationSeconds": 1.25}'))
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Succeeded", "Migrated")
    assert [p["phase"] for p in s["phaseTransitionTimestamps"]][-2:] == ["Running", "Succeeded"]
    assert [(reason, etype) for _, etype, reason, _ in w.recorder.events] == [("Succeeded", "Normal")]


def test_target_bound_and_reporting_gives_scheduled_and_target_ready_in_one_write() -> None:
    w = World()
    w.vms.add(vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid", "completed": False}))
    w.migrations.add(migration(phase="Scheduling", sourceNode="node0",
                               phaseTransitionTimestamps=phases("Pending", "Scheduling")))
    w.pods.add(pod(target_name(w), "node1", phase="Running", domain=WAITS))  # bound, and reports it waits
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["targetNode"]) == ("TargetReady", "node1")
    assert [p["phase"] for p in s["phaseTransitionTimestamps"]] == ["Pending", "Scheduling", "Scheduled",
                                                                     "TargetReady"]
    assert w.recorder.events == []  # the steps between Scheduling and the end are in the status only


def test_success_cleanup_sequence() -> None:
    w = _running_world(None, phase="Succeeded", guest="target")
    w.pods.add(pod("placeholder", role="other"))
    agent = pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0, finalizers=(AGENT_FIN,))
    w.pods.add(agent)
    assert w.run() == [("delete", "pods", "default", agent_name(w))]
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0, finalizers=(AGENT_FIN,),
                   deleting=True))
    # the outcome is on the Migration: the agent pod's finalizer goes (guarded by the pod's uid)
    assert w.run() == [("patch", "pods", "default", agent_name(w),
                        {"metadata": {"uid": f"{agent_name(w)}-uid", "finalizers": []}})]
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
    w = _running_world(pod("x", role="agent"), deleting=True, guest="moving")
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Running"))
    assert w.run() == [("delete", "pods", "default", agent_name(w))]
    assert w.recorder.events[-1][2] == "Cancelling"


def test_cancel_agent_reports_cancelled_then_vm_back_on_source() -> None:
    w = _running_world(None, deleting=True)
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Failed", exit_code=23, deleting=True))
    [(_, _, _, _, body)] = w.run()
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "Cancelled")


def test_cancel_completed_just_before_is_a_success() -> None:
    w = _running_world(None, deleting=True, guest="target")
    w.sync.remember_agent_exit("testvm-migration-uid", 0, '{"outcome": "succeeded"}')
    [(_, _, _, _, body)] = w.run()
    assert body["status"]["phase"] == "Succeeded"


def test_an_agent_end_seen_late_still_gets_the_whole_settle_wait() -> None:
    """The agent ended long ago by its own clock, but this controller only sees it now (its status, like the
    launchers' reports, was held up by an API server that was down): the reports get the settle wait."""
    w = _running_world(None, guest="source")
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Failed", exit_code=137))
    assert w.run() == []
    w.clock.step(Timeouts().settle_s)
    [(_, _, _, _, body)] = w.run()
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "AgentFailed")


def test_a_remembered_exit_belongs_to_its_migration_uid_only() -> None:
    """A new Migration of the same name (another uid) must not take the old one's agent outcome."""
    w = _running_world(None, guest="source")  # its agent pod vanished; the guest is still on the source
    w.sync.remember_agent_exit("an-older-migration-of-that-name-uid", 0, '{"outcome": "succeeded"}')
    assert w.run() == []  # the end is new to this controller: the reports get the settle wait
    w.clock.step(Timeouts().settle_s)
    [(_, _, _, _, body)] = w.run()
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Failed", "AgentPodGone")
    assert "exitCode" not in (s.get("result") or {})


def test_an_agent_that_does_not_stop_in_its_grace_period_is_force_deleted() -> None:
    w = _running_world(None, deleting=True, guest="moving")
    stuck = pod(agent_name(w), "node0", role="agent", phase="Running", deleting=True, finalizers=(AGENT_FIN,))
    # its grace (30 s) ran out 60 s ago: asked to stop 90 s ago, past the agent's 45 s grace, and not yet forced
    stuck["metadata"]["deletionGracePeriodSeconds"] = 30
    w.pods.add(stuck)
    assert w.run() == [("delete", "pods", "default", agent_name(w))]
    assert w.writer.deleted_with_grace[agent_name(w)] == 0
    assert w.recorder.events[-1][1:3] == ("Warning", "AgentForceDeleted")


AGENT_ENDED_40S_AGO = "2026-01-01T00:09:20Z"


def test_a_job_that_outlives_its_agent_is_aborted_by_an_abort_pod() -> None:
    w = _running_world(None, guest="moving")  # the launchers still report the job on both sides
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Failed", exit_code=137, message="Killed",
                   finished=AGENT_ENDED_40S_AGO, finalizers=(AGENT_FIN,)))
    assert w.run() == []  # first seen now: the reports get the settle wait before anything is decided
    w.clock.step(Timeouts().settle_s)
    acts = w.run()
    assert [a[:2] for a in acts] == [("create", "serviceaccounts"), ("create", "rolebindings"),
                                     ("create", "serviceaccounts"), ("create", "rolebindings"), ("create", "pods")]
    abort = w.writer.last_created
    assert abort["metadata"]["name"].startswith("virt-abort-testvm-migration-")
    assert abort["spec"]["nodeName"] == "node0" and "--abort-job" in abort["spec"]["containers"][0]["args"]
    [(_, etype, reason, message)] = w.recorder.events
    assert (etype, reason) == ("Warning", "OrphanedJob") and "node0" in message


def test_a_guest_on_neither_node_fails_as_lost_and_the_vm_never_says_running() -> None:
    w = _running_world(None, guest="source")
    w.pods.add(pod("virt-launcher-testvm-aaaaa", "node0", phase="Failed", exit_code=11,
                   message="GuestCrashed: domain default_testvm crashed", domain=NONE_HERE))
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Failed", exit_code=137, message="Killed",
                   finished=AGENT_ENDED_40S_AGO, finalizers=(AGENT_FIN,)))
    assert w.run() == []
    w.clock.step(Timeouts().settle_s)
    [(_, _, _, _, body)] = w.run()
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Failed", "GuestLost")
    assert "node0" in s["message"] and "node1" in s["message"] and "'testvm'" in s["message"]
    assert w.registry.get_sample_value("virtmigrate_guests_lost_total", {"reason": "GuestLost"}) == 1.0
    # cleanup: once the agent pod is gone, the VM's status says the guest is lost (never Running)
    m = copy.deepcopy(w.migrations.get_by_key("default/testvm-migration"))
    assert m is not None
    m["status"].update(phase="Failed", reason="GuestLost", message=s["message"])
    w.migrations.add(m)
    w.pods.delete_key(f"default/{agent_name(w)}")
    [(verb, res, _, name, vm_body)] = w.run()
    assert (verb, res, name) == ("patch", "vms/status", "testvm")
    assert (vm_body["status"]["phase"], vm_body["status"]["reason"]) == ("Failed", "GuestLost")
    assert vm_body["status"]["migrationState"]["completed"] is True


def test_a_paused_copy_left_on_the_source_is_told_in_a_warning() -> None:
    w = _running_world(None, guest="target")
    w.pods.add(pod("virt-launcher-testvm-aaaaa", "node0", phase="Running",
                   domain=DomainFacts(reachable=True, present=True, state=DomainState.PAUSED, mode=LauncherMode.HOLD)))
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Succeeded", exit_code=0,
                   message='{"outcome": "succeeded"}', finalizers=(AGENT_FIN,)))
    [(_, _, _, _, body)] = w.run()
    assert body["status"]["phase"] == "Succeeded"
    assert [e[1:3] for e in w.recorder.events] == [("Normal", "Succeeded"), ("Warning", "GuestLeftover")]
    assert "source node" in w.recorder.events[-1][3]


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


def test_a_contradiction_found_when_the_target_pod_is_made_fails_without_creating_it() -> None:
    """The VM's constraints changed after admission: the decision fails the Migration, nothing is created."""
    w = World()
    v = vm(phase="Migrating", migrationState={"migrationUID": "testvm-migration-uid", "completed": False})
    v["spec"]["nodeSelector"] = {"zone": "a"}
    w.vms.add(v)
    m = migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Pending", "Scheduling"))
    m["spec"]["nodeSelector"] = {"zone": "b"}
    w.migrations.add(m)
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "ConstraintContradiction")
    assert "zone" in body["status"]["message"]


def test_a_target_node_without_a_libvirt_uri_fails_as_no_destination() -> None:
    w = _running_world(None, phase="TargetReady")
    bare = node("node1", "b", 16602)
    bare["metadata"]["annotations"] = {}
    w.nodes.add(bare)  # no libvirt-uri annotation and no InternalIP
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    s = body["status"]
    assert (s["phase"], s["reason"]) == ("Failed", "NoDestinationURI")
    assert "node1" in s["message"] and "virtmigrate.kubevirt.io/libvirt-uri" in s["message"]


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


@pytest.mark.parametrize("account", [pytest.param("virtmigrate-agent", id="configured"),
                                     pytest.param("", id="none-configured")])
def test_agent_gets_the_configured_service_account(account: str) -> None:
    """No lookup of the ServiceAccount any more: the controller makes the identities itself, first."""
    w = _running_world(None, phase="TargetReady")
    w.sync.config = ControllerConfig(agent_service_account=account)
    assert w.run() == [*IDENTITIES, ("create", "pods", "default", agent_name(w))]
    spec = w.writer.last_created["spec"]
    assert spec.get("serviceAccountName", "") == account
    assert not [e for e in w.recorder.events if e[1] == "Warning"]


def test_agent_created_event_only_when_this_sync_created_it() -> None:
    w = _running_world(None, phase="TargetReady")
    w.writer.fail_create_with = errors.AlreadyExists  # made by an earlier sync whose status write failed
    assert w.run()[-1] == ("create", "pods", "default", agent_name(w))
    assert [e[2] for e in w.recorder.events] == []


def test_an_agent_pod_whose_migration_is_gone_is_deleted_and_its_finalizer_released() -> None:
    """An agent pod that appears after its Migration's cleanup (a create the cache had not shown) must not
    migrate a guest nobody governs, nor hang Terminating on our finalizer."""
    w = World()
    late = pod("virt-migration-testvm-migration-ab73c", "node0", role="agent", phase="Running",
               finalizers=(AGENT_FIN,), owner_uid="gone-uid")
    late["metadata"]["annotations"] = {"virtmigrate.kubevirt.io/migration-name": "testvm-migration"}
    w.pods.add(late)
    actions = w.run()
    assert ("delete", "pods", "default", "virt-migration-testvm-migration-ab73c") in actions
    patches = [a for a in actions if a[0] == "patch" and a[1] == "pods"]
    assert patches and patches[0][-1]["metadata"]["finalizers"] == []


def test_a_launcher_of_a_gone_migration_is_not_an_orphan_to_sweep() -> None:
    w = World()
    target = pod("virt-launcher-testvm-abcde", "node1", role="launcher", phase="Running")
    target["metadata"]["annotations"] = {"virtmigrate.kubevirt.io/migration-name": "testvm-migration"}
    w.pods.add(target)
    assert w.run() == []


def test_an_agent_on_a_node_that_stopped_answering_is_stopped_with_a_warning() -> None:
    """The source node's kubelet is gone: the agent pod's status is frozen there, and so is the source
    launcher's report. The agent is stopped at once (not after the hour-long Running bound)."""
    w = _running_world(pod("x", role="agent"), guest="moving")
    w.pods.add(pod(agent_name(w), "node0", role="agent", phase="Running"))
    lost = copy.deepcopy(w.nodes.get_by_key("node0"))
    assert lost is not None
    lost.setdefault("spec", {})["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    w.nodes.add(lost)
    assert w.run() == [("delete", "pods", "default", agent_name(w))]
    assert w.recorder.events[-1][1:3] == ("Warning", "AgentNodeLost")


def _generation(obj: JSON, generation: int, rv: str) -> JSON:
    obj["metadata"].update(generation=generation, resourceVersion=rv)
    return obj


def test_a_vm_spec_changed_between_syncs_is_placed_again() -> None:
    """What the specs give (placement) is reused across status writes, never across a new generation: a VM
    whose nodeSelector changes after one sync is merged again, and the contradiction is found."""
    w = World()
    migrating = {"phase": "Migrating", "migrationState": {"migrationUID": "testvm-migration-uid", "completed": False}}
    w.vms.add(_generation(vm(**migrating), 1, "7"))
    m = migration(phase="Scheduling", sourceNode="node0", phaseTransitionTimestamps=phases("Pending", "Scheduling"))
    m["spec"]["nodeSelector"] = {"zone": "b"}
    w.migrations.add(_generation(m, 1, "42"))
    assert w.run()[-1] == ("create", "pods", "default", target_name(w))
    w.vms.add(_generation(vm(**migrating), 1, "8"))  # a status write: same generation, same placement
    assert w.run() == [("create", "pods", "default", target_name(w))]
    changed = _generation(vm(**migrating), 2, "9")
    changed["spec"]["nodeSelector"] = {"zone": "a"}
    w.vms.add(changed)
    [(verb, res, _, _, body)] = w.run()
    assert (verb, res) == ("patch", "migrations/status")
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "ConstraintContradiction")


def test_a_migration_made_again_under_the_same_name_gets_its_own_agent() -> None:
    """The names derived from a Migration's uid are reused across its status writes only: the same name
    with a new uid (deleted and created again) derives new ones."""
    w = _running_world(None, phase="TargetReady")
    w.migrations.add(_generation(w.migrations.get_by_key("default/testvm-migration") or {}, 1, "43"))
    first = agent_name(w)
    assert w.run()[-1] == ("create", "pods", "default", first)
    again = copy.deepcopy(w.migrations.get_by_key("default/testvm-migration") or {})
    again["metadata"].update(uid="another-uid", resourceVersion="50")
    again["status"].pop("agentPod", None)
    w.migrations.add(again)
    created = w.run()[-1]
    assert created[:3] == ("create", "pods", "default") and created[3] == agent_name(w) != first
