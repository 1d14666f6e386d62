"""The VM controller: a VM with spec.running gets a launcher pod; its status tells where the guest runs.

Fed by a SharedInformerFactory (VMs, and the pods carrying virtmigrate's role label — the same informer
the migration controller uses) and a KubeClient for writes; consumed by cmd/controller.py, which runs
`VMController(...).run(workers, stop)` next to the migration controller (and by the e2e tests).

Events become keys `namespace/vm`: a VM's own events, and a launcher pod's events for the VM its label
names. `sync(key)` reads the caches, asks the pure `vm_decide.decide_vm` for a Plan, and executes it:
delete pods, create the launcher pod (vmpods.new_launcher_pod, start mode), patch the VM's status
(merge patch guarded by resourceVersion), record an Event. Worker contract as sample-controller.

Contract with the migration controller (which owns a VM's move between nodes):
  * While status.phase is Migrating the VM controller writes nothing for that VM and touches none of
    its pods; the migration controller sets the phase back (Running) when the move ends.
  * status.launcherPod is authoritative. After a successful migration the migration controller sets
    it (and status.node) to the target pod; the source launcher has then exited 0 with reason Migrated,
    and the VM controller deletes that finished pod as a leftover.
  * Launcher pods with a Migration label are the migration controller's, unless status.launcherPod
    names one. Changing spec.nodeSelector/affinity never touches the running pod: placement changes
    only through a Migration.
  * A launcher that exits with reason Migrated while the VM is not Migrating lost its guest to a migration
    no Migration owns: the VM is Unknown while probes (receive-mode launchers bound to every node) say
    where the guest runs; it is adopted there, or started again once every node says it has none.
  * A launcher that ends for any other reason (guest crash, shutdown, pod deleted) puts the VM in
    phase Failed with the launcher's reason and message; the guest is not restarted automatically —
    setting spec.running to false (phase Stopped) and back to true starts it again.
  * A spec the controller cannot use (it does not parse, or the API server rejects the launcher pod it
    makes) puts the VM in phase Failed with reason InvalidSpec and a message naming the field; a guest
    already running keeps running (only reason and message say so). The fixed spec starts it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.api.constants import LABEL_ROLE, LABEL_VM, ROLE_LAUNCHER
from virtmigrate.api.domainfacts import parse_termination
from virtmigrate.api.names import pod_migration_name, pod_vm_name
from virtmigrate.api.vm import VM
from virtmigrate.clock import Clock, RealClock
from virtmigrate.controller.events import EventRecorder
from virtmigrate.controller.identities import Identities
from virtmigrate.controller.indexes import POD_VM_INDEX, index_pod_by_vm, object_key
from virtmigrate.controller.migration.execute import KubeWriter
from virtmigrate.controller.migration.status import with_condition
from virtmigrate.controller.podstate import PodView, pod_view
from virtmigrate.controller.policy import ImageDirs, image_path_problem
from virtmigrate.controller.vm import decide as vm_decide
from virtmigrate.controller.vm.disruption import decide_pdb
from virtmigrate.controller.vm.pods import (
    ANNOTATION_PROBE,
    NodeAccess,
    launcher_pod_name,
    new_launcher_pod,
    new_probe_pod,
    with_node_access,
)
from virtmigrate.controller.workers import Workers, process_next_work_item
from virtmigrate.informer import DeletedFinalStateUnknown, FuncHandler, SharedInformerFactory, object_of
from virtmigrate.kube.resources import NODES, PDBS, PODS, VMS
from virtmigrate.workqueue import QueueConfig, RateLimitingQueue

log = structlog.get_logger("virtmigrate.vm")

JSON = dict[str, Any]
POD_SELECTOR = LABEL_ROLE  # the same pod informer as the migration controller's
PDB_VM_INDEX = "pdb-vm"    # PodDisruptionBudgets by `namespace/<label virtmigrate.kubevirt.io/vm>`



class VMController:
    def __init__(self, client: KubeWriter, factory: SharedInformerFactory, *, recorder: EventRecorder,
                 clock: Clock | None = None, registry: CollectorRegistry | None = None,
                 reader: Any = None, image_dirs: ImageDirs | None = None,
                 identities: Identities | None = None, node_access: NodeAccess | None = None) -> None:
        """`reader` (a KubeClient) confirms with a live GET that a pod the cache lacks is really gone;
        without one the cache is trusted. `image_dirs`: where kernels and disks may lie (default: anywhere).
        `node_access`: the launcher pods' image and libvirt socket (default: NodeAccess())."""
        self.image_dirs = image_dirs or ImageDirs()
        self.node_access = node_access or NodeAccess()
        self.client = client
        self.reader = reader if reader is not None else (client if hasattr(client, "get") else None)
        self.recorder = recorder
        self.identities = identities or Identities(client)
        self.clock = clock or RealClock()
        self.vms = factory.informer_for(VMS)
        self.pods = factory.informer_for(PODS, label_selector=POD_SELECTOR, indexers={POD_VM_INDEX: index_pod_by_vm})
        # The budgets of VMs whose eviction strategy migrates (vm/disruption.py); keyed to their VM.
        self.pdbs = factory.informer_for(PDBS, label_selector=LABEL_VM, indexers={PDB_VM_INDEX: index_pod_by_vm})
        self.nodes = factory.informer_for(NODES)  # where a guest that left without a Migration is looked for
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            config=QueueConfig(name="vms", clock=self.clock, registry=registry))
        self._removed: dict[str, tuple[str, str]] = {}  # vm key -> (pod, how it ended), seen on its deletion
        self._removed_lock = threading.Lock()
        self._refusals: dict[str, None] = {}  # pod uids whose LeftoverRefused end was reported, oldest first
        self._pool = Workers("vm", self.process_next_work_item, self.queue, log=log)
        self.vms.add_event_handler(FuncHandler(
            add=lambda o, _initial: self.queue.add(object_key(o)), update=lambda _o, n: self.queue.add(object_key(n)),
            delete=lambda o: self.queue.add(object_key(object_of(o)))), inline=True)
        self.pods.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_pod(o), update=lambda _o, n: self._on_pod(n),
            delete=self._on_pod_delete), inline=True)
        self.pdbs.add_event_handler(FuncHandler(
            add=lambda o, _initial: self._on_pdb(o), update=lambda _o, n: self._on_pdb(n),
            delete=lambda o: self._on_pdb(object_of(o))), inline=True)

    # --- handlers -----------------------------------------------------------------------------

    def _vm_key_of_pod(self, pod: JSON) -> str | None:
        meta = pod.get("metadata") or {}
        vm = pod_vm_name(pod)
        if (meta.get("labels") or {}).get(LABEL_ROLE) != ROLE_LAUNCHER or not vm:
            return None
        return f"{meta.get('namespace')}/{vm}"

    def _on_pod(self, pod: JSON) -> None:
        key = self._vm_key_of_pod(pod)
        if key is not None:
            self.queue.add(key)

    def _note_refused_leftovers(self, vm_raw: JSON, views: list[PodView]) -> None:
        """A Warning on the VM, once per pod, for each launcher that ended with LeftoverRefused (vm_decide).
        Read by sync from the pods it decides on, and by the delete handler from a pod's final state (one
        removed before its VM's sync ran)."""
        for view in views:
            event = vm_decide.leftover_refused_event(view)
            if event is None:
                continue
            with self._removed_lock:
                if view.uid in self._refusals:
                    continue
                self._refusals[view.uid] = None
                while len(self._refusals) > 1024:  # bounded: the oldest go first
                    del self._refusals[next(iter(self._refusals))]
            self.recorder.event(vm_raw, *event)

    def _on_pdb(self, pdb: JSON) -> None:
        meta = pdb.get("metadata") or {}
        vm = pod_vm_name(pdb)  # the annotation's full name, as on our pods
        if vm:
            self.queue.add(f"{meta.get('namespace')}/{vm}")

    def _on_pod_delete(self, obj: JSON | DeletedFinalStateUnknown) -> None:
        pod = object_of(obj)
        key = self._vm_key_of_pod(pod)
        if key is None:
            return
        view = pod_view(pod)
        if view is not None:
            vm_raw = self.vms.indexer.get_by_key(key)
            if vm_raw is not None:
                self._note_refused_leftovers(vm_raw, [view])
            note = f"pod {view.name} was deleted"
            if view.exit_code is not None:
                reason, message = parse_termination(view.termination_message, view.exit_code)
                note += f"; its launcher exited {view.exit_code}: {reason}: {message}"
            with self._removed_lock:
                self._removed[key] = (view.name, note)
        self.queue.add(key)

    # --- sync ---------------------------------------------------------------------------------

    def sync(self, key: str) -> vm_decide.Plan | None:
        raw = self.vms.indexer.get_by_key(key)
        ns = key.partition("/")[0]
        pods = self.pods.indexer.by_index(POD_VM_INDEX, key)
        if raw is None:
            self._delete_orphans(ns, pods)
            self._sync_pdb(key, None)
            return None
        try:
            vm = VM.parse(raw)
            paths = image_path_problem(vm.namespace, vm.spec.kernel, vm.spec.disk, self.image_dirs)
            if paths:
                raise errors.ValidationError(paths)
        except errors.ValidationError as e:
            # Not retried: the next edit of the VM queues it again. The status says why it cannot start.
            live = any(not (v.terminated or v.deleting) for p in pods for v in [pod_view(p)] if v is not None)
            plan = vm_decide.decide_invalid_spec(raw, f"VM {key}: {e}", guest_may_run=live)
            self._write_status(raw, plan)
            return plan
        self._sync_pdb(key, vm)
        launchers = [vm_decide.LauncherPod(view=v, owner_uid=vm_decide.owner_uid(p),
                                           migration=pod_migration_name(p),
                                           probe_for=str(((p["metadata"].get("annotations") or {})
                                                          .get(ANNOTATION_PROBE)) or ""))
                     for p in pods if (p["metadata"].get("labels") or {}).get(LABEL_ROLE) == ROLE_LAUNCHER
                     for v in [pod_view(p)] if v is not None]
        self._note_refused_leftovers(raw, [lp.view for lp in launchers])
        with self._removed_lock:
            removed_pod, note = self._removed.get(key, ("", ""))
        if removed_pod != vm.launcher_pod:
            note = ""
        names = [p["metadata"]["name"] for p in pods]
        nodes = sorted(str(n["metadata"]["name"]) for n in self.nodes.indexer.list())
        plan = vm_decide.decide_vm(vm, launchers, removed_note=note, all_pod_names=names, nodes=nodes)
        if plan.confirm_gone:
            if not self._confirm_gone(ns, plan.confirm_gone):
                return vm_decide.Plan(requeue_after=1.0)  # the cache lags behind a pod we created
            plan = vm_decide.decide_vm(vm, launchers, removed_note=note, pod_confirmed_gone=True,
                                       all_pod_names=names, nodes=nodes)
        self._execute(vm, plan)
        return plan

    def _sync_pdb(self, key: str, vm: VM | None) -> None:
        """Create or delete the VM's PodDisruptionBudget as vm/disruption.py decides."""
        ns = key.partition("/")[0]
        plan = decide_pdb(vm, self.pdbs.indexer.by_index(PDB_VM_INDEX, key))
        for name, uid in plan.delete:
            log.info("pdb_delete", vm=key, pdb=name)
            with contextlib.suppress(errors.NotFound, errors.Conflict):  # gone, or another object by now
                self.client.delete(PDBS, name, ns, uid=uid or None)
        if plan.create is not None:
            with contextlib.suppress(errors.AlreadyExists):  # the cache lags behind our own create
                self.client.create(PDBS, plan.create, ns)
            log.info("pdb_created", vm=key, pdb=plan.create["metadata"]["name"])

    def _confirm_gone(self, ns: str, pod: str) -> bool:
        if self.reader is None:
            return True
        try:
            self.reader.get(PODS, pod, ns)
        except errors.NotFound:
            return True
        return False

    def _delete_orphans(self, ns: str, pods: list[JSON]) -> None:
        """The VM is gone: its launcher pods go too (no garbage collector runs in every cluster)."""
        for p in pods:
            meta = p["metadata"]
            if meta.get("deletionTimestamp") or (meta.get("labels") or {}).get(LABEL_ROLE) != ROLE_LAUNCHER:
                continue
            self._delete_pod(ns, meta["name"], meta.get("uid", ""))

    def _delete_pod(self, ns: str, name: str, uid: str) -> None:
        # NotFound/Conflict: already gone, or replaced by a pod of the same name that is not this one.
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            self.client.delete(PODS, name, ns, uid=uid or None)

    def _execute(self, vm: VM, plan: vm_decide.Plan) -> None:
        """Creates, then the status (guarded by resourceVersion), then deletes: a status write that fails (a
        cache a moment behind our own last write) leaves every pod in place for the next sync to decide again;
        deleting first once removed a VM's recorded launcher pod while the status naming its successor was
        refused, and the VM stayed Unknown with no pod to look at."""
        if plan.create_attempt is not None:
            pod = with_node_access(new_launcher_pod(vm, name=launcher_pod_name(vm, attempt=plan.create_attempt),
                                                    node_name=plan.on_node), self.node_access)
            self.identities.ensure(vm.namespace)  # the launcher's ServiceAccount, to report its domain
            # AlreadyExists: created by an earlier sync whose status write failed; the write below adopts it.
            try:
                with contextlib.suppress(errors.AlreadyExists):
                    self.client.create(PODS, pod, vm.namespace)
            except errors.Invalid as e:
                # The API server refuses the pod this spec makes: retrying cannot help, the user must fix it.
                self._write_status(vm.raw, vm_decide.decide_invalid_spec(
                    vm.raw, f"VM {vm.key}: the API server rejected its launcher pod {pod['metadata']['name']}: "
                            f"{e}", guest_may_run=False))
                return
            log.info("launcher_pod_created", vm=vm.key, pod=pod["metadata"]["name"])
        for node in plan.probe_nodes:
            probe = with_node_access(new_probe_pod(vm, gone_pod=plan.probe_for, node=node), self.node_access)
            self.identities.ensure(vm.namespace)
            with contextlib.suppress(errors.AlreadyExists):  # the cache lags behind our own create
                self.client.create(PODS, probe, vm.namespace)
            log.info("probe_pod_created", vm=vm.key, pod=probe["metadata"]["name"], node=node)
        self._write_status(vm.raw, plan)
        for name, uid in plan.delete:
            log.info("launcher_pod_delete", vm=vm.key, pod=name)
            self._delete_pod(vm.namespace, name, uid)

    def _write_status(self, raw: Mapping[str, Any], plan: vm_decide.Plan) -> None:
        """The plan's status (a merge patch guarded by resourceVersion) and Event."""
        meta = raw["metadata"]
        if plan.status is not None:
            status = {**plan.status, "observedGeneration": meta.get("generation", 0)}
            if plan.condition is not None:  # written with the status it explains, never on its own
                status["conditions"] = with_condition(list((raw.get("status") or {}).get("conditions") or []),
                                                      vm_decide.COND_GUEST_LOCATED, *plan.condition,
                                                      self.clock.wall())
            patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
            self.client.patch(VMS, meta["name"], patch, meta.get("namespace"), subresource="status")
            log.info("vm_status", vm=object_key(raw), phase=plan.status.get("phase"), node=plan.status.get("node"),
                     reason=plan.status.get("reason"))
        if plan.event is not None:
            self.recorder.event(raw, *plan.event)

    # --- workers ------------------------------------------------------------------------------

    def process_next_work_item(self) -> bool:
        """Handle one key; False once the queue is shut down."""
        return process_next_work_item(self.queue, self.sync, name="vm", log=log)

    def run(self, workers: int, stop: threading.Event) -> None:
        """Wait for the caches, run `workers` workers until `stop`, then drain and return.
        The caller starts the factory (`factory.start(stop)`) before or after calling this."""
        self._pool.run((self.vms, self.pods, self.pdbs, self.nodes), workers, stop)

    def healthy(self) -> bool:
        return self._pool.healthy()
