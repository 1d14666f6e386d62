"""The migration controller: informers feed a rate-limited work queue, workers call sync(key).

Fed by: a SharedInformerFactory (Migrations, VMs, our Pods, Nodes) and a KubeClient for writes.
Consumed by: cmd/controller.py, which runs it while this replica holds the leader Lease.

Event handlers only turn events into keys (`namespace/name` of a Migration):
    Migration  its own key; when one finishes or goes away, the Pending ones that now fit
    Pod        the Migration named by its migration label (target launcher, agent); for any launcher,
               also the unfinished Migrations of its VM (it may be their source); an agent pod that
               vanishes leaves its exit code behind for the sync (it may never be seen otherwise)
    VM         the unfinished Migrations of that VM
The worker contract is sample-controller's: success -> forget; error -> add_rate_limited;
`requeue_after` -> add_after (timeouts); always done(key).
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from virtmigrate.api.constants import LABEL_ROLE, ROLE_AGENT
from virtmigrate.api.names import pod_migration_name, pod_vm_name
from virtmigrate.clock import Clock, RealClock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import EventRecorder
from virtmigrate.controller.indexes import (
    MIGRATION_VM_INDEX,
    POD_MIGRATION_INDEX,
    POD_VM_INDEX,
    index_migration_by_vm,
    index_pod_by_migration,
    index_pod_by_vm,
    object_key,
)
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.active import ACTIVE_INDEX, ACTIVE_INDEXERS, vm_value
from virtmigrate.controller.migration.decide import FINISHED_RESULTS, Action, Decision
from virtmigrate.controller.migration.execute import KubeWriter, Listers, MigrationSync
from virtmigrate.controller.podstate import pod_view
from virtmigrate.controller.workers import (
    OUTCOME_CONFLICT,
    OUTCOME_ERROR,
    OUTCOME_OK,
    Workers,
    process_next_work_item,
)
from virtmigrate.informer import DeletedFinalStateUnknown, FuncHandler, SharedInformerFactory, object_of
from virtmigrate.kube.resources import MIGRATION_POLICIES, MIGRATIONS, NAMESPACES, NODES, PODS, VMS
from virtmigrate.workqueue import QueueConfig, RateLimitingQueue

log = structlog.get_logger("virtmigrate.migration")

JSON = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")
POD_SELECTOR = LABEL_ROLE  # only our pods: launchers and agents carry the role label



class MigrationController:
    def __init__(self, client: KubeWriter, factory: SharedInformerFactory, *, config: ControllerConfig,
                 recorder: EventRecorder, metrics: MigrationMetrics, clock: Clock | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        self.metrics = metrics
        self.migrations = factory.informer_for(MIGRATIONS, indexers={MIGRATION_VM_INDEX: index_migration_by_vm,
                                                                     **ACTIVE_INDEXERS})
        self.vms = factory.informer_for(VMS)
        self.pods = factory.informer_for(PODS, label_selector=POD_SELECTOR, indexers={
            POD_VM_INDEX: index_pod_by_vm, POD_MIGRATION_INDEX: index_pod_by_migration})
        self.nodes = factory.informer_for(NODES)
        self.policies = factory.informer_for(MIGRATION_POLICIES)  # migration/policies.py: defaults per VM
        self.namespaces = factory.informer_for(NAMESPACES)
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            config=QueueConfig(name="migrations", clock=self.clock, registry=registry))
        self.syncer = MigrationSync(
            Listers(self.migrations.indexer, self.vms.indexer, self.pods.indexer, self.nodes.indexer,
                    policies=self.policies.indexer, namespaces=self.namespaces.indexer), client,
            config=config, clock=self.clock, recorder=recorder, metrics=metrics)
        self._namespaces = frozenset(config.namespaces)
        self._event_at: dict[str, float] = {}   # key -> when the first unprocessed event for it arrived
        self._event_lock = threading.Lock()
        self._pool = Workers("migration", self.process_next_work_item, self.queue, log=log)
        # The metric children every sync touches, looked up once (labels() takes a lock and builds a key).
        self._event_to_action: Any = None  # made on its first use, as labels() would
        self._syncs: dict[str, Any] = {}  # outcome -> its child, made on its first use (as labels() would)
        metrics.watch_phases(self.migrations.indexer.list)
        metrics.initialize(FINISHED_RESULTS, controller="migration",
                           sync_outcomes=(OUTCOME_OK, OUTCOME_CONFLICT, OUTCOME_ERROR))
        self.migrations.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_migration(None, o), update=self._on_migration,
            delete=self._on_migration_delete), inline=True)
        self.pods.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_pod(o), update=lambda _o, n: self._on_pod(n),
            delete=self._on_pod_delete), inline=True)
        self.vms.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_vm(o), update=lambda _o, n: self._on_vm(n),
            delete=self._on_vm_delete), inline=True)

    # --- handlers: events -> keys ----------------------------------------------------------------

    def enqueue(self, key: str) -> None:
        if self._namespaces and key.partition("/")[0] not in self._namespaces:
            return  # not a namespace this controller serves
        with self._event_lock:
            self._event_at.setdefault(key, self.clock.now())
        self.queue.add(key)

    def _on_migration(self, old: JSON | None, new: JSON) -> None:
        key = object_key(new)
        phase = (new.get("status") or {}).get("phase")
        if phase not in (None, "Pending"):
            self.syncer.seen_admitted(key)
        self.enqueue(key)
        old_phase = (old.get("status") or {}).get("phase") if old is not None else None
        if phase in TERMINAL and old_phase not in TERMINAL:
            self._wake_pending()

    def _on_migration_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None:
        key = object_key(object_of(obj))
        self.syncer.observer.forget(migration=key)
        self.enqueue(key)
        self._wake_pending()

    def _wake_pending(self) -> None:
        """A slot may have freed up: queue the Pending Migrations that capacity admits now."""
        for key in self.syncer.admissible_pending():
            self.enqueue(key)

    def _migrations_of_vm(self, ns: str, vm: str) -> None:
        for m in self.migrations.indexer.by_index(ACTIVE_INDEX, vm_value(ns, vm)):
            self.enqueue(object_key(m))  # finished history needs no wake-up

    def _on_pod(self, pod: JSON) -> None:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        ns = str(meta.get("namespace", ""))
        migration, vm = pod_migration_name(pod), pod_vm_name(pod)
        if migration:
            self.enqueue(f"{ns}/{migration}")
        if vm and labels.get(LABEL_ROLE) != ROLE_AGENT:
            # A launcher is also the source of the VM's later Migrations (a former target keeps the
            # label of the Migration that created it).
            self._migrations_of_vm(ns, vm)

    def _on_pod_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None:
        pod = object_of(obj)
        meta = pod.get("metadata") or {}
        self.syncer.observer.forget(pod=object_key(pod))
        ref: JSON = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Migration"), {})
        owner, owner_name = ref.get("uid", ""), ref.get("name", "")
        if (meta.get("labels") or {}).get(LABEL_ROLE) == ROLE_AGENT and owner:
            view = pod_view(pod)
            if view is not None and view.exit_code is not None:
                # Keyed by the owning Migration's uid: a new Migration of the same name never inherits it.
                self.syncer.remember_agent_exit(str(owner), view.exit_code, view.termination_message,
                                                key=f"{meta.get('namespace')}/{owner_name}")
        self._on_pod(pod)

    def _on_vm_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None:
        vm = object_of(obj)
        self.syncer.observer.forget(vm=object_key(vm))
        self._on_vm(vm)

    def _on_vm(self, vm: JSON) -> None:
        meta = vm.get("metadata") or {}
        self._migrations_of_vm(str(meta.get("namespace", "")), str(meta.get("name", "")))

    # --- workers ---------------------------------------------------------------------------------

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in (self.migrations, self.vms, self.pods, self.nodes, self.policies,
                                            self.namespaces))

    def process_next_work_item(self) -> bool:
        """Handle one key; False once the queue is shut down."""
        return process_next_work_item(self.queue, self._sync_key, name="migration", log=log, observe=self._observe)

    def _sync_key(self, key: str) -> Decision | None:
        with self._event_lock:
            t0 = self._event_at.pop(key, None)
        d = self.syncer.sync(key)
        if d is not None and d.action != Action.NOTHING and t0 is not None:
            if self._event_to_action is None:
                self._event_to_action = self.metrics.event_to_action.labels(controller="migration")
            self._event_to_action.observe(self.clock.now() - t0)
        return d

    def _observe(self, key: str, outcome: str, result: object) -> None:
        child = self._syncs.get(outcome)
        if child is None:
            child = self._syncs[outcome] = self.metrics.syncs.labels(controller="migration", outcome=outcome)
        child.inc()

    def start_workers(self, workers: int) -> None:
        self._pool.start(workers)

    def run(self, workers: int, stop: threading.Event) -> None:
        """Wait for the caches, run `workers` workers until `stop`, then drain and return."""
        self._pool.run((self.migrations, self.vms, self.pods, self.nodes, self.policies, self.namespaces), workers,
                       stop)

    def healthy(self) -> bool:
        return self._pool.healthy()
