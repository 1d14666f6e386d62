"""The VM controller: pure decisions (table-driven) and sync(key) over caches with a recording client."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.api import VM
from virtmigrate.api.constants import LABEL_MIGRATION, LABEL_ROLE, LABEL_VM
from virtmigrate.api.domainfacts import DomainFacts, DomainState, parse_termination
from virtmigrate.controller.events import RecordingEventRecorder
from virtmigrate.controller.podstate import PodView
from virtmigrate.controller.vm import decide as vm_decide
from virtmigrate.controller.vm.controller import VMController
from virtmigrate.controller.vm.decide import LauncherPod, decide_vm
from virtmigrate.controller.vm.pods import launcher_pod_name, probe_pod_name
from virtmigrate.informer import FactoryConfig, SharedInformerFactory


def _vm(*, running: bool = True, phase: str = "", pod: str = "", node: str = "", generation: int = 1,
        observed: int | None = 1, **status: Any) -> VM:
    st: dict[str, Any] = {k: v for k, v in {"phase": phase, "launcherPod": pod, "node": node}.items() if v}
    if observed is not None:
        st["observedGeneration"] = observed
    st.update(status)
    return VM.parse({"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
                     "metadata": {"name": "vm", "namespace": "ns", "uid": "U", "generation": generation,
                                  "resourceVersion": "7"},
                     "spec": {"memory": "64Mi", "running": running, "kernel": "/k"}, "status": st})


def _lp(name: str, *, phase: str = "Running", ready: bool = True, node: str = "node1", exit_code: int | None = None,
        message: str = "", deleting: bool = False, owner: str = "U", migration: str = "") -> LauncherPod:
    return LauncherPod(PodView(name=name, uid=f"uid-{name}", node=node, phase=phase, ready=ready, deleting=deleting,
                               exit_code=exit_code, termination_message=message), owner_uid=owner, migration=migration)


P0 = launcher_pod_name(_vm(), attempt=0)


def test_a_running_vm_without_pod_gets_one_and_is_scheduling() -> None:
    plan = decide_vm(_vm(), [])
    assert plan.create_attempt == 0
    assert plan.status is not None and plan.status["phase"] == "Scheduling" and plan.status["launcherPod"] == P0


def test_names_of_existing_pods_are_skipped() -> None:
    plan = decide_vm(_vm(phase="Stopped"), [], all_pod_names=[P0])
    assert plan.create_attempt == 1


@pytest.mark.parametrize(("vm", "pods", "phase", "reason"), [
    pytest.param(_vm(phase="Scheduling", pod=P0), [_lp(P0, ready=False)], "Scheduling", "", id="starting"),
    pytest.param(_vm(phase="Scheduling", pod=P0), [_lp(P0)], "Running", "", id="ready-is-running"),
    pytest.param(_vm(phase="Running", pod=P0, node="node1"),
                 [_lp(P0, phase="Failed", exit_code=11, message="GuestCrashed: domain crashed")], "Failed",
                 "GuestCrashed", id="guest-crashed"),
    pytest.param(_vm(phase="Running", pod=P0, node="node1"),
                 [_lp(P0, phase="Succeeded", exit_code=0, deleting=True,
                      message="StoppedOnRequest: shut down")], "Failed", "LauncherPodDeleted", id="pod-deleted"),
    pytest.param(_vm(phase="Scheduling", pod=P0),
                 [_lp(P0, phase="Pending", ready=False, node="")], "Scheduling", "", id="pending"),
])
def test_status_follows_the_current_launcher_pod(vm: VM, pods: list[LauncherPod], phase: str, reason: str) -> None:
    plan = decide_vm(vm, pods)
    status = plan.status or vm_decide.managed_status(vm)  # None: already what it should be
    assert status["phase"] == phase and status["reason"] == reason
    assert plan.create_attempt is None and plan.delete == ()


def test_running_status_carries_node_and_domain_uuid() -> None:
    plan = decide_vm(_vm(phase="Scheduling", pod=P0), [_lp(P0, node="node2")])
    assert plan.status is not None
    assert (plan.status["node"], plan.status["domainUUID"]) == ("node2", "U")


def test_a_migrating_vm_is_left_to_the_migration_controller() -> None:
    vm = _vm(phase="Migrating", pod=P0, node="node1", running=False)
    assert decide_vm(vm, [_lp(P0), _lp("target", migration="m1")]) == vm_decide.Plan()


def test_a_pod_missing_from_the_cache_is_confirmed_before_failing_the_vm() -> None:
    vm = _vm(phase="Running", pod=P0, node="node1")
    assert decide_vm(vm, []).confirm_gone == P0
    plan = decide_vm(vm, [], pod_confirmed_gone=True, removed_note="pod was deleted")
    assert plan.status is not None and plan.status["phase"] == "Failed"
    assert plan.status["reason"] == "LauncherPodDeleted" and "pod was deleted" in plan.status["message"]


def test_failed_stays_failed_until_the_user_stops_the_vm() -> None:
    vm = _vm(phase="Failed", pod=P0, reason="LauncherPodDeleted", message="m")
    assert decide_vm(vm, []).create_attempt is None


# --- a guest that left by a migration no Migration owns --------------------------------------------------

NODES = ("node0", "node1", "node2")
GONE = _lp(P0, phase="Succeeded", exit_code=0, message="Migrated: domain ns_vm left this node by live migration")
RUNS = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True)
NOTHING = DomainFacts(reachable=True)   # a probe: libvirt there has no such domain
PAUSED = DomainFacts(reachable=True, present=True, state=DomainState.PAUSED)


def _probe(node: str, facts: DomainFacts | None, **kw: Any) -> LauncherPod:
    name = f"probe-{node}"
    return LauncherPod(PodView(name=name, uid=f"uid-{name}", node=node, phase="Running", domain=facts, **kw),
                       owner_uid="U", probe_for=P0)


def test_a_migrated_launcher_of_an_unowned_vm_sends_probes_and_the_vm_is_unknown_meanwhile() -> None:
    vm = _vm(phase="Running", pod=P0, node="node1")
    plan = decide_vm(vm, [GONE], nodes=NODES)
    assert (plan.probe_nodes, plan.probe_for) == (NODES, P0)
    assert plan.status is not None and (plan.status["phase"], plan.status["reason"]) == ("Unknown", "LocatingGuest")
    assert plan.status["node"] == "" and "no Migration owns" in plan.status["message"]  # never Running, no guest
    assert plan.event is not None and plan.event[:2] == ("Warning", "LocatingGuest")
    assert plan.condition is not None and plan.condition[:2] == ("False", "LocatingGuest")
    assert plan.delete == () and plan.create_attempt is None and plan.requeue_after is not None
    # Later: two nodes said "not here", one has not reported yet: no new probe, no new Event, still Unknown.
    vm = _vm(phase="Unknown", pod=P0, reason="LocatingGuest", message="m")
    plan = decide_vm(vm, [GONE, _probe("node0", NOTHING), _probe("node1", NOTHING), _probe("node2", None)],
                     nodes=NODES)
    assert plan.probe_nodes == () and plan.event is None and plan.create_attempt is None
    assert plan.status is not None and plan.status["phase"] == "Unknown" and "node2" in plan.status["message"]


@pytest.mark.parametrize("holder", [
    pytest.param(_probe("node2", RUNS), id="a-probe-finds-it"),
    pytest.param(LauncherPod(PodView(name="target", uid="uid-target", node="node2", phase="Running", domain=RUNS),
                             owner_uid="U", migration="gone-migration"), id="a-vanished-migrations-target-holds-it"),
])
def test_the_guest_found_running_on_one_node_is_adopted_there(holder: LauncherPod) -> None:
    vm = _vm(phase="Unknown", pod=P0, reason="LocatingGuest")
    plan = decide_vm(vm, [GONE, _probe("node0", NOTHING), _probe("node1", NOTHING), holder], nodes=NODES)
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["node"], plan.status["launcherPod"], plan.status["reason"]) == (
        "Running", "node2", holder.view.name, "GuestFound")
    assert plan.event is not None and plan.event[1] == "GuestFound"
    assert plan.condition is not None and plan.condition[:2] == ("True", "GuestFound")
    assert set(plan.delete) == {(P0, f"uid-{P0}"), ("probe-node0", "uid-probe-node0"),
                                ("probe-node1", "uid-probe-node1")}  # never the holder
    assert plan.create_attempt is None and plan.probe_nodes == ()


def test_every_node_saying_it_has_no_guest_stops_the_probes_then_starts_it_again() -> None:
    vm = _vm(phase="Unknown", pod=P0, reason="LocatingGuest")
    probes = [_probe(n, NOTHING) for n in NODES]
    names = [P0, *(p.view.name for p in probes)]
    plan = decide_vm(vm, [GONE, *probes], nodes=NODES, all_pod_names=names)
    p1 = launcher_pod_name(vm, attempt=1)  # attempt 0 is the pod that lost the guest
    # First the probes stop: one on the node where the guest starts would hold it too.
    assert plan.create_attempt is None and plan.probe_nodes == ()
    assert set(plan.delete) == {(p.view.name, p.view.uid) for p in probes}
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"], plan.status["launcherPod"]) == ("Unknown", "GuestNotFound", p1)
    assert plan.event is not None and plan.event[:2] == ("Warning", "GuestNotFound")
    # Probes still stopping: nothing is created, nothing is probed again.
    vm = _vm(phase="Unknown", pod=p1, reason="GuestNotFound")
    stopping = [replace(p, view=replace(p.view, deleting=True)) for p in probes]
    plan = decide_vm(vm, [GONE, *stopping[:2], probes[2]], nodes=NODES, all_pod_names=names)
    assert plan.create_attempt is None and plan.probe_nodes == () and plan.status is None
    assert plan.delete == ((probes[2].view.name, probes[2].view.uid),)
    # Every probe ended: the named pod is created; the pod that lost the guest and the probes go.
    ended = [replace(p, view=replace(p.view, phase="Succeeded", exit_code=0,
                                     termination_message="NothingReceived: stopped")) for p in probes]
    plan = decide_vm(vm, [GONE, *ended], nodes=NODES, all_pod_names=names)
    assert plan.create_attempt == 1
    assert plan.status is not None and (plan.status["phase"], plan.status["launcherPod"]) == ("Scheduling", p1)
    assert set(plan.delete) == {(P0, f"uid-{P0}"), *((p.view.name, p.view.uid) for p in probes)}
    # Created, but the status naming it was refused (the cache behind): the pod is the VM's, nothing else is made.
    started = _lp(p1, node="node0", ready=False)
    plan = decide_vm(vm, [GONE, started], nodes=NODES, all_pod_names=[P0, p1])
    assert plan.create_attempt is None and plan.probe_nodes == ()
    assert plan.status is not None and (plan.status["phase"], plan.status["launcherPod"]) == ("Scheduling", p1)
    assert (started.view.name, started.view.uid) not in plan.delete


def test_the_named_pod_is_created_even_when_the_pod_that_lost_the_guest_is_gone() -> None:
    vm = _vm(phase="Unknown", pod=launcher_pod_name(_vm(), attempt=1), reason="GuestNotFound")
    plan = decide_vm(vm, [], nodes=NODES)
    assert plan.create_attempt == 1  # the name the status gave, not the first free one (attempt 0)


@pytest.mark.parametrize(("pods", "reason"), [
    pytest.param([_probe("node0", NOTHING), _probe("node1", NOTHING), _probe("node2", PAUSED)], "LocatingGuest",
                 id="a-paused-copy-is-not-absence"),
    pytest.param([_probe("node0", NOTHING), _probe("node1", NOTHING)], "LocatingGuest", id="a-node-not-asked-yet"),
    pytest.param([_probe("node0", NOTHING), _probe("node2", RUNS)], "LocatingGuest",
                 id="found-but-a-node-not-asked-yet"),
    pytest.param([_probe("node0", NOTHING), _probe("node1", None), _probe("node2", RUNS)], "LocatingGuest",
                 id="found-but-a-probe-not-reporting-yet"),
    pytest.param([_probe("node0", RUNS), _probe("node2", RUNS), _probe("node1", NOTHING)], "GuestOnSeveralNodes",
                 id="on-two-nodes"),
])
def test_never_started_again_nor_adopted_without_every_nodes_word(pods: list[LauncherPod], reason: str) -> None:
    plan = decide_vm(_vm(phase="Running", pod=P0, node="node1"), [GONE, *pods], nodes=NODES)
    assert plan.create_attempt is None and plan.delete == ()
    assert plan.status is not None and (plan.status["phase"], plan.status["reason"]) == ("Unknown", reason)


def test_a_migrated_launcher_of_a_migrating_vm_is_the_migration_controllers() -> None:
    assert decide_vm(_vm(phase="Migrating", pod=P0, node="node1"), [GONE], nodes=NODES) == vm_decide.Plan()


def test_a_vm_the_migration_controller_left_unknown_is_an_admins_until_stopped() -> None:
    vm = _vm(phase="Unknown", pod=P0, node="node1", reason="GuestOnBothNodes", message="both run it")
    assert decide_vm(vm, [_lp(P0), _lp("target", node="node2", migration="m1")], nodes=NODES) == vm_decide.Plan()
    stop = decide_vm(_vm(running=False, phase="Unknown", pod=P0, reason="GuestOnBothNodes"), [_lp(P0)])
    assert stop.delete == ((P0, f"uid-{P0}"),)


def test_after_a_migration_the_new_pod_is_current_and_the_old_one_is_cleaned_up() -> None:
    vm = _vm(phase="Running", pod="target", node="node2")
    old = _lp(P0, phase="Succeeded", exit_code=0, message="Migrated: left")
    plan = decide_vm(vm, [old, _lp("target", node="node2", migration="m1")])
    assert plan.delete == ((P0, f"uid-{P0}"),)
    assert plan.status is not None and plan.status["node"] == "node2"


def test_a_paused_persistent_copy_a_migration_left_is_kept_and_other_leftovers_go() -> None:
    vm = _vm(phase="Running", pod="target", node="node2")
    def paused(name: str, *, persistent: bool) -> LauncherPod:
        return LauncherPod(PodView(name=name, uid=f"uid-{name}", node="node1", phase="Running", domain=DomainFacts(
            reachable=True, present=True, state=DomainState.PAUSED, persistent=persistent)), owner_uid="U")

    kept, transient = paused(P0, persistent=True), paused("p1", persistent=False)
    exited = LauncherPod(replace(paused("p2", persistent=True).view, phase="Succeeded", exit_code=0), owner_uid="U")
    plan = decide_vm(vm, [kept, transient, exited, _lp("target", node="node2", migration="m1")])
    assert plan.delete == (("p1", "uid-p1"), ("p2", "uid-p2"))  # an exited launcher's last report is history
    assert plan.status is not None and plan.status["node"] == "node2"


def test_node_selector_changes_never_touch_the_running_pod() -> None:
    vm = VM.parse({**_vm(phase="Running", pod=P0, node="node1", generation=2).raw,
                   "spec": {"memory": "64Mi", "running": True, "kernel": "/k", "nodeSelector": {"zone": "b"}}})
    plan = decide_vm(vm, [_lp(P0)])
    assert plan.delete == () and plan.create_attempt is None
    assert plan.status is not None and plan.status["phase"] == "Running"  # only observedGeneration moves


def test_running_false_deletes_the_pod_then_reports_stopped() -> None:
    vm = _vm(running=False, phase="Running", pod=P0, node="node1")
    plan = decide_vm(vm, [_lp(P0), _lp("target", migration="m1")])
    assert plan.delete == ((P0, f"uid-{P0}"),)  # the migration's pod is not ours to delete
    assert plan.status is not None and plan.status["reason"] == "Stopping"
    done = decide_vm(vm, [])
    assert done.status is not None and done.status["phase"] == "Stopped" and done.status["launcherPod"] == ""


def test_an_unrecorded_pod_is_adopted_and_stale_pods_of_an_older_vm_deleted() -> None:
    plan = decide_vm(_vm(phase="Pending"), [_lp(P0, ready=False), _lp("old", owner="OLD")])
    assert plan.create_attempt is None and plan.delete == (("old", "uid-old"),)
    assert plan.status is not None and plan.status["launcherPod"] == P0


@pytest.mark.parametrize(("text", "code", "expected"), [
    pytest.param("GuestCrashed: boom\n", 11, ("GuestCrashed", "boom"), id="launcher-format"),
    pytest.param("Traceback: x", 1, ("Traceback", "x"), id="capitalised-word"),
    pytest.param("something odd", 1, ("LauncherFailed", "something odd"), id="free-text"),
    pytest.param("", 137, ("LauncherFailed", "the launcher exited with code 137"), id="empty"),
])
def test_parse_termination(text: str, code: int, expected: tuple[str, str]) -> None:
    assert parse_termination(text, code) == expected


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.existing: set[str] = set()
        self.created: dict[str, Any] = {}  # the last object created

    def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        self.calls.append(("create", name if res.plural == "pods" else f"{res.plural}/{name}"))
        self.created = obj
        return obj

    def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = "") -> dict[str, Any]:
        self.calls.append(("patch", patch))
        return {}

    def delete(self, res: Any, name: str, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.calls.append(("delete", name))
        return {}

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        if name in self.existing:
            return {}
        raise errors.NotFound("gone", status=404)


def _controller(client: RecordingClient) -> tuple[VMController, RecordingEventRecorder]:
    factory = SharedInformerFactory(None, FactoryConfig(), lister_watcher_for=lambda *a: None)  # type: ignore[arg-type,return-value]
    rec = RecordingEventRecorder()
    return VMController(client, factory, recorder=rec, registry=CollectorRegistry(), reader=client), rec


def test_sync_creates_the_launcher_pod_and_writes_status_guarded_by_resource_version() -> None:
    client = RecordingClient()
    c, rec = _controller(client)
    c.vms.indexer.add(dict(_vm(observed=None).raw))
    c.sync("ns/vm")
    # The launcher reports its domain under its own ServiceAccount: the namespace's identities come first.
    assert client.calls[:5] == [("create", "serviceaccounts/virtmigrate-launcher"),
                                ("create", "rolebindings/virtmigrate-launcher"),
                                ("create", "serviceaccounts/virtmigrate-agent"),
                                ("create", "rolebindings/virtmigrate-agent"),
                                ("create", P0)]
    assert client.created["spec"]["serviceAccountName"] == "virtmigrate-launcher"
    kind, patch = client.calls[5]
    assert kind == "patch" and patch["metadata"]["resourceVersion"] == "7"
    assert patch["status"]["phase"] == "Scheduling" and patch["status"]["observedGeneration"] == 1
    assert [e[2] for e in rec.events] == ["LauncherCreated"]  # type: ignore[attr-defined]


def test_sync_deletes_launchers_of_a_deleted_vm() -> None:
    client = RecordingClient()
    c, _ = _controller(client)
    c.pods.indexer.add({"metadata": {"name": P0, "namespace": "ns", "uid": "p",
                                     "labels": {LABEL_VM: "vm", LABEL_ROLE: "launcher"}}})
    c.pods.indexer.add({"metadata": {"name": "agent", "namespace": "ns", "uid": "a",
                                     "labels": {LABEL_VM: "vm", LABEL_ROLE: "agent", LABEL_MIGRATION: "m"}}})
    c.sync("ns/vm")
    assert client.calls == [("delete", P0)]


def test_sync_waits_while_the_cache_lags_behind_a_created_pod() -> None:
    client = RecordingClient()
    client.existing.add(P0)
    c, _ = _controller(client)
    c.vms.indexer.add(dict(_vm(phase="Scheduling", pod=P0).raw))
    plan = c.sync("ns/vm")
    assert plan is not None and plan.requeue_after == 1.0 and client.calls == []


def test_sync_sends_a_probe_bound_to_every_node_when_the_guest_left_without_a_migration() -> None:
    client = RecordingClient()
    c, rec = _controller(client)
    c.vms.indexer.add(dict(_vm(phase="Running", pod=P0, node="node1").raw))
    c.pods.indexer.add({"metadata": {"name": P0, "namespace": "ns", "uid": "p", "labels": {
        LABEL_VM: "vm", LABEL_ROLE: "launcher"}, "ownerReferences": [{"kind": "VM", "uid": "U", "controller": True}]},
        "spec": {"nodeName": "node1"}, "status": {"phase": "Succeeded", "containerStatuses": [{"state": {
            "terminated": {"exitCode": 0, "message": "Migrated: domain ns_vm left this node by live migration"}}}]}})
    for n in ("node0", "node1"):
        c.nodes.indexer.add({"metadata": {"name": n}})
    c.sync("ns/vm")
    probes = [name for kind, name in client.calls if kind == "create" and "/" not in name]
    assert probes == [probe_pod_name(_vm(), gone_pod=P0, node=n) for n in ("node0", "node1")]
    assert client.created["spec"]["nodeName"] == "node1" and "--mode=receive" in \
        client.created["spec"]["containers"][0]["args"]
    assert client.created["metadata"]["annotations"]["virtmigrate.kubevirt.io/probe-for"] == P0
    [patch] = [body for kind, body in client.calls if kind == "patch"]
    assert patch["status"]["phase"] == "Unknown"
    [cond] = patch["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("GuestLocated", "False", "LocatingGuest")
    assert cond["lastTransitionTime"]
    assert [e[2] for e in rec.events] == ["LocatingGuest"]  # type: ignore[attr-defined]


def test_a_refused_status_write_leaves_every_pod_in_place() -> None:
    """The guest was found on node1 by its probe. The status naming the probe as the VM's pod is refused (a
    cache a moment behind this controller's own last write: 409): nothing may be deleted then, or the VM's
    recorded pod is gone while its status still names it, and the VM stays Unknown with no pod to look at
    (seen in the e2e tier on a loaded machine)."""
    from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN

    class Refusing(RecordingClient):
        def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, *,
                  subresource: str | None = None, patch_type: str = "") -> dict[str, Any]:
            raise errors.Conflict("the object has been modified", status=409)

    def pod(name: str, node: str, *, probe: bool, status: dict[str, Any], facts: DomainFacts | None) -> Any:
        ann = {"virtmigrate.kubevirt.io/probe-for": P0} if probe else {}
        if facts is not None:
            ann[ANNOTATION_DOMAIN] = facts.to_annotation()
        return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "annotations": ann,
                             "labels": {LABEL_VM: "vm", LABEL_ROLE: "launcher"},
                             "ownerReferences": [{"kind": "VM", "uid": "U", "controller": True}]},
                "spec": {"nodeName": node}, "status": status}

    client = Refusing()
    c, _ = _controller(client)
    c.vms.indexer.add(dict(_vm(phase="Unknown", pod=P0, reason="LocatingGuest").raw))
    c.pods.indexer.add(pod(P0, "node0", probe=False, facts=None, status={"phase": "Succeeded", "containerStatuses": [
        {"state": {"terminated": {"exitCode": 0, "message": "Migrated: domain ns_vm left this node"}}}]}))
    for n, facts in (("node0", NOTHING), ("node1", RUNS)):
        c.pods.indexer.add(pod(probe_pod_name(_vm(), gone_pod=P0, node=n), n, probe=True, facts=facts,
                               status={"phase": "Running"}))
        c.nodes.indexer.add({"metadata": {"name": n}})
    with pytest.raises(errors.Conflict):
        c.sync("ns/vm")
    assert [kind for kind, _ in client.calls if kind == "delete"] == []


# --- specs the controller cannot use ------------------------------------------------------------------

def _raw(spec: dict[str, Any], *, generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
            "metadata": {"name": "vm", "namespace": "ns", "uid": "U", "generation": generation,
                         "resourceVersion": "7"},
            "spec": spec, "status": status}


def test_an_invalid_spec_fails_the_vm_naming_the_field() -> None:
    plan = vm_decide.decide_invalid_spec(_raw({"memory": "0"}), "spec.memory: '0' is no memory at all",
                                         guest_may_run=False)
    assert plan.status is not None and plan.status["phase"] == "Failed"
    assert plan.status["reason"] == "InvalidSpec" and "spec.memory" in plan.status["message"]
    assert plan.event is not None and plan.event[:2] == ("Warning", "InvalidSpec")


def test_an_invalid_spec_leaves_a_running_guest_running_and_says_so() -> None:
    raw = _raw({"memory": "0"}, phase="Running", node="node1", launcherPod=P0)
    plan = vm_decide.decide_invalid_spec(raw, "spec.memory: bad", guest_may_run=True)
    assert plan.status is not None and (plan.status["phase"], plan.status["node"]) == ("Running", "node1")
    assert plan.status["reason"] == "InvalidSpec" and "keeps running" in plan.status["message"]
    assert plan.delete == () and plan.create_attempt is None


def test_an_invalid_spec_already_reported_writes_nothing_again() -> None:
    first = vm_decide.decide_invalid_spec(_raw({"memory": "0"}), "spec.memory: bad", guest_may_run=False)
    assert first.status is not None
    again = vm_decide.decide_invalid_spec(_raw({"memory": "0"}, observedGeneration=1, **first.status),
                                          "spec.memory: bad", guest_may_run=False)
    assert again == vm_decide.Plan()


def test_a_fixed_spec_starts_the_vm_that_failed_for_it() -> None:
    failed = {"phase": "Failed", "reason": "InvalidSpec", "message": "m", "observedGeneration": 1}
    assert decide_vm(VM.parse(_raw({"memory": "64Mi", "running": True, "kernel": "/k"}, **failed)),
                     []).create_attempt is None  # same generation: still the spec that failed
    fixed = VM.parse(_raw({"memory": "64Mi", "running": True, "kernel": "/k"}, generation=2, **failed))
    assert decide_vm(fixed, []).create_attempt == 0


def test_sync_of_an_unparsable_vm_writes_failed_status() -> None:
    client = RecordingClient()
    c, rec = _controller(client)
    c.vms.indexer.add(_raw({"memory": "64Mi", "nodeSelector": {"x y": "a"}}))
    c.sync("ns/vm")
    [(kind, patch)] = [call for call in client.calls if call[0] == "patch"]
    assert kind == "patch" and patch["status"]["phase"] == "Failed" and patch["status"]["reason"] == "InvalidSpec"
    assert "spec.nodeSelector" in patch["status"]["message"] and "ns/vm" in patch["status"]["message"]
    assert [e[2] for e in rec.events] == ["InvalidSpec"]  # type: ignore[attr-defined]


def test_sync_fails_the_vm_when_the_api_server_rejects_its_launcher_pod() -> None:
    class Rejecting(RecordingClient):
        def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
            if res.plural != "pods":
                return super().create(res, obj, namespace)  # the launcher's identity is fine
            raise errors.Invalid("POST pods: 422 Invalid: spec.tolerations[0].key: Invalid value", status=422)

    client = Rejecting()
    c, _ = _controller(client)
    c.vms.indexer.add(dict(_vm(observed=None).raw))
    c.sync("ns/vm")
    [(kind, patch)] = [call for call in client.calls if call[0] == "patch"]
    assert kind == "patch" and patch["status"]["phase"] == "Failed" and patch["status"]["reason"] == "InvalidSpec"
    assert "rejected its launcher pod" in patch["status"]["message"] and "tolerations" in patch["status"]["message"]


def test_a_target_launcher_that_libvirt_refused_a_leftover_warns_on_the_vm_once() -> None:
    """LeftoverRefused (launcher/decide.leftover_refused): the node keeps a record of a copy that never ran,
    which blocks the VM there; the VM says so, with the launcher's words (the fix), once per pod."""
    client = RecordingClient()
    c, rec = _controller(client)
    c.vms.indexer.add(dict(_vm(phase="Running", pod=P0, node="node0").raw))
    pod = {"metadata": {"name": "target", "namespace": "ns", "uid": "t",
                        "labels": {LABEL_VM: "vm", LABEL_ROLE: "launcher", LABEL_MIGRATION: "m"}},
           "spec": {"nodeName": "node1"},
           "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {
               "exitCode": 16, "message": "LeftoverRefused: libvirt on this node refused to destroy ... To clear "
                                          "it: stop libvirtd"}}}]}}
    c.pods.indexer.add(pod)
    c.sync("ns/vm")
    c.sync("ns/vm")       # the same end seen again (another sync, the deletion's final state)
    c.pods.indexer.delete(pod)
    c._on_pod_delete(pod)
    warned = [e for e in rec.events if e[2] == "LeftoverRefused"]  # type: ignore[attr-defined]
    assert len(warned) == 1
    assert warned[0][1] == "Warning" and "node node1" in warned[0][3] and "To clear it" in warned[0][3]
    running = {**pod, "status": {"phase": "Running"}}
    c.pods.indexer.add({**running, "metadata": {**pod["metadata"], "uid": "u2"}})
    c.sync("ns/vm")
    assert len([e for e in rec.events if e[2] == "LeftoverRefused"]) == 1  # type: ignore[attr-defined]
