"""The evacuation controller: a node that is cordoned (or carries the drain taint) is emptied of VMs by live
migration; a node made schedulable again stops what has not started.

Fed by: a SharedInformerFactory (Nodes, VMs, Migrations, our Pods — the same informers as the other two
controllers) and a KubeClient for writes. Consumed by: cmd/controller.py, which runs it next to the migration
and VM controllers while this replica holds the leader Lease.

Keys are node names. Event handlers: a Node's own changes; for a change of any Node's spec or labels (a node
uncordoned or added changes where VMs can go), every draining node too; a VM's node and the node its
status.evacuation names; a Migration's VM's node and its evacuation label's node.

`sync(node)` observes the caches, asks `decide_evacuation` (evacuation/decide.py) for the whole step and
performs it in order: the Node condition and Events, then Migration deletes and creates, then each VM's
status.evacuation and Events. The Node says which VMs cannot go anywhere before anything moves. Memory: none
beyond the caches — evacuation Migrations carry their node (label) and attempt (annotation), so a restarted or
newly elected controller continues where the last one stopped, and names are deterministic (a create retried
after a restart meets AlreadyExists, never a second Migration).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.api.constants import (
    API_VERSION,
    DEFAULT_DRAIN_TAINT_KEY,
    LABEL_EVACUATION,
    NODE_CONDITION_EVACUATION,
)
from virtmigrate.api.vm import VM
from virtmigrate.clock import Clock, RealClock
from virtmigrate.controller.evacuation.decide import (
    MigrationInfo,
    NodeState,
    Plan,
    Settings,
    decide_evacuation,
    new_evacuation_migration,
)
from virtmigrate.controller.evacuation.targets import plan_node
from virtmigrate.controller.events import EventRecorder
from virtmigrate.controller.indexes import MIGRATION_VM_INDEX, POD_VM_INDEX, index_migration_by_vm, index_pod_by_vm
from virtmigrate.controller.migration.execute import KubeWriter
from virtmigrate.controller.workers import Workers, process_next_work_item
from virtmigrate.informer import DeletedFinalStateUnknown, FuncHandler, SharedInformerFactory, object_of
from virtmigrate.kube.client import STRATEGIC_PATCH
from virtmigrate.kube.resources import MIGRATIONS, NODES, PODS, VMS
from virtmigrate.workqueue import QueueConfig, RateLimitingQueue

log = structlog.get_logger("virtmigrate.evacuation")

JSON = dict[str, Any]
POD_SELECTOR = "virtmigrate.kubevirt.io/role"  # the pod informer the other controllers share


@dataclass(frozen=True)
class EvacuationConfig:
    drain_taint_key: str = DEFAULT_DRAIN_TAINT_KEY  # a taint with this key (any effect) means "drain"; "" = off
    default_node_selector: Mapping[str, str] | None = None  # as the migration controller's
    settings: Settings = field(default_factory=Settings)


def is_draining(node: Mapping[str, Any], drain_taint_key: str) -> bool:
    """Cordoned, or tainted with the drain key."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return True
    return bool(drain_taint_key) and any(t.get("key") == drain_taint_key for t in spec.get("taints") or [])


def node_condition(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == NODE_CONDITION_EVACUATION:
            return dict(c)
    return None


class EvacuationController:
    def __init__(self, client: KubeWriter, factory: SharedInformerFactory, *, recorder: EventRecorder,
                 config: EvacuationConfig | None = None, clock: Clock | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.config = config or EvacuationConfig()
        self.clock = clock or RealClock()
        self.nodes = factory.informer_for(NODES)
        self.vms = factory.informer_for(VMS)
        self.migrations = factory.informer_for(MIGRATIONS, indexers={MIGRATION_VM_INDEX: index_migration_by_vm})
        self.pods = factory.informer_for(PODS, label_selector=POD_SELECTOR, indexers={POD_VM_INDEX: index_pod_by_vm})
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            config=QueueConfig(name="evacuations", clock=self.clock, registry=registry))
        self._pool = Workers("evacuation", self.process_next_work_item, self.queue, log=log)
        self.nodes.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_node(None, o), update=self._on_node,
            delete=lambda o: self._on_node(None, object_of(o))), inline=True)
        self.vms.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_vm(o), update=self._on_vm_update,
            delete=lambda o: self._on_vm(object_of(o))), inline=True)
        self.migrations.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_migration(o), update=lambda _o, n: self._on_migration(n),
            delete=self._on_migration_delete), inline=True)

    # --- handlers: events -> node names ----------------------------------------------------------

    def _on_node(self, old: JSON | None, new: JSON) -> None:
        name = str((new.get("metadata") or {}).get("name", ""))
        self.queue.add(name)
        if old is None or old.get("spec") != new.get("spec") or (old.get("metadata") or {}).get("labels") != (
                new.get("metadata") or {}).get("labels"):
            for other in self.nodes.indexer.list():  # where VMs can go changed: re-judge every draining node
                if is_draining(other, self.config.drain_taint_key):
                    self.queue.add(str(other["metadata"]["name"]))

    def _evacuating(self, name: str) -> bool:
        """Whether node `name` drains or still carries our condition: only then can a change of a VM on it, or
        of such a VM's Migration, change its step. A schedulable node's step (`decide_evacuation`'s stop)
        reads only the VMs marked for it and its evacuation-labelled Migrations, which queue it themselves."""
        node = self.nodes.indexer.get_by_key(name)
        return node is not None and (is_draining(node, self.config.drain_taint_key)
                                     or node_condition(node) is not None)

    def _on_vm(self, vm: JSON) -> None:
        status = vm.get("status") or {}
        node, marked = status.get("node"), (status.get("evacuation") or {}).get("node")
        if marked:
            self.queue.add(str(marked))
        if node and node != marked and self._evacuating(str(node)):
            # Every step of every Migration changes its VM: on a busy cluster, queueing every node for each
            # made the controller re-read all VMs per step (most of its CPU at 1,000 concurrent Migrations).
            self.queue.add(str(node))

    def _on_vm_update(self, old: JSON, new: JSON) -> None:
        self._on_vm(old)  # the node it left, too
        self._on_vm(new)

    def _on_migration(self, m: JSON) -> None:
        meta = m.get("metadata") or {}
        node = (meta.get("labels") or {}).get(LABEL_EVACUATION)
        if node:
            self.queue.add(str(node))  # a shortened label of a long node name finds no Node: harmless
        vm_name = ((m.get("spec") or {}).get("selector") or {}).get("name")
        vm = self.vms.indexer.get_by_key(f"{meta.get('namespace')}/{vm_name}") if vm_name else None
        if vm is not None:
            self._on_vm(vm)

    def _on_migration_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None:
        self._on_migration(object_of(obj))

    # --- sync ------------------------------------------------------------------------------------

    def observe(self, name: str) -> tuple[NodeState, list[VM], list[MigrationInfo], dict[str, Any]] | None:
        node = self.nodes.indexer.get_by_key(name)
        if node is None:
            return None
        state = NodeState(name, is_draining(node, self.config.drain_taint_key), node_condition(node))
        vms: list[VM] = []
        for raw in self.vms.indexer.list():
            status = raw.get("status") or {}
            if status.get("node") != name and (status.get("evacuation") or {}).get("node") != name:
                continue
            with contextlib.suppress(errors.ValidationError):  # the VM controller reports a bad spec
                vms.append(VM.parse(raw))
        migs = [MigrationInfo.parse(m) for vm in vms
                for m in self.migrations.indexer.by_index(MIGRATION_VM_INDEX, vm.key)]
        targets: dict[str, Any] = {}
        if state.draining:
            leaving = [vm for vm in vms if vm.node == name and vm.spec.eviction_strategy.migrates]
            targets = plan_node(leaving, name, self.nodes.indexer.list(), self.pods.indexer.list(),
                                default_selector=self.config.default_node_selector)
        return state, vms, migs, targets

    def sync(self, name: str) -> Plan | None:
        seen = self.observe(name)
        if seen is None:
            return None  # the Node is gone: nothing to drain, nothing to write on it
        state, vms, migs, targets = seen
        plan = decide_evacuation(state, vms, migs, targets, now=self.clock.wall(), settings=self.config.settings)
        self._execute(name, plan)
        return plan

    def _execute(self, name: str, plan: Plan) -> None:
        bound = log.bind(node=name)
        # Node Events live in "default" with the node's name as uid, as the kubelet's: `kubectl describe node`
        # looks them up that way.
        node_ref = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}}
        if plan.condition is not None:
            now = self.clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
            cond = {**plan.condition, "lastHeartbeatTime": now, "lastTransitionTime": now}
            self.client.patch(NODES, name, {"status": {"conditions": [cond]}}, subresource="status",
                              patch_type=STRATEGIC_PATCH)
            bound.info("evacuation_condition", status=cond["status"], reason=cond["reason"])
        if plan.remove_condition:
            self.client.patch(NODES, name, {"status": {"conditions": [
                {"type": NODE_CONDITION_EVACUATION, "$patch": "delete"}]}}, subresource="status",
                patch_type=STRATEGIC_PATCH)
        for etype, reason, message in plan.node_events:
            self.recorder.event(node_ref, etype, reason, message)
        for m in plan.delete:
            bound.info("evacuation_cancelled", migration=f"{m.namespace}/{m.name}", phase=m.phase)
            with contextlib.suppress(errors.NotFound, errors.Conflict):  # gone already, or another object now
                self.client.delete(MIGRATIONS, m.name, m.namespace, uid=m.uid or None)
        for c in plan.create:
            obj = new_evacuation_migration(c.vm, name, c.attempt)
            with contextlib.suppress(errors.AlreadyExists):  # created before a restart: deterministic name
                self.client.create(MIGRATIONS, obj, c.vm.namespace)
            bound.info("evacuation_created", vm=c.vm.key, migration=obj["metadata"]["name"], attempt=c.attempt)
        for vm, evacuation in plan.vm_status:
            patch = {"metadata": {"resourceVersion": vm.raw["metadata"].get("resourceVersion")},
                     "status": {"evacuation": evacuation}}
            self.client.patch(VMS, vm.name, patch, vm.namespace, subresource="status")
        for vm, etype, reason, message in plan.vm_events:
            self.recorder.event({**vm.raw, "kind": "VM", "apiVersion": API_VERSION}, etype, reason, message)

    # --- workers ---------------------------------------------------------------------------------

    def process_next_work_item(self) -> bool:
        """Handle one node; False once the queue is shut down."""
        return process_next_work_item(self.queue, self.sync, name="evacuation", log=log)

    def run(self, workers: int, stop: threading.Event) -> None:
        """Wait for the caches, run `workers` workers until `stop`, then drain and return."""
        self._pool.run((self.nodes, self.vms, self.migrations, self.pods), workers, stop)

    def healthy(self) -> bool:
        return self._pool.healthy()
