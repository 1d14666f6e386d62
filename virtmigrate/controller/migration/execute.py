"""sync(key) for one Migration: observe the caches, ask the phase machine, take one API action.

Fed by: the migration controller's workers (keys `namespace/name` from the work queue), the four
informer caches (Migrations, VMs, Pods, Nodes; read-only) and the controller configuration.
Consumed by: migration/controller.py, which requeues on errors and after `requeue_after`.

Thin by design (sample-controller's syncHandler): `_observe` (migration/observe.py) turns cached
objects into a pure `Observed`, `decide` (migration/decide.py) picks the step, `_act` performs exactly one write:
a status or metadata merge patch guarded by the object's resourceVersion (a stale cache gives a
Conflict and a quick retry, never a lost update), or a create/delete of a pod with a
deterministic name (AlreadyExists and NotFound are normal: a retried step is idempotent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog

from virtmigrate import errors
from virtmigrate.api.constants import (
    FINALIZER_AGENT,
    FINALIZER_MIGRATION,
    LABEL_ROLE,
    ROLE_ABORT,
    ROLE_AGENT,
    MigrationPhase,
)
from virtmigrate.api.vm import VM
from virtmigrate.clock import Clock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import NORMAL, WARNING, EventRecorder
from virtmigrate.controller.identities import Identities
from virtmigrate.controller.indexes import MIGRATION_VM_INDEX, POD_MIGRATION_INDEX, object_key
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration import history as history
from virtmigrate.controller.migration import placement as placement
from virtmigrate.controller.migration import policies as policies
from virtmigrate.controller.migration import status as st
from virtmigrate.controller.migration.capacity import decide_admissions
from virtmigrate.controller.migration.decide import (
    LOST_REASONS,
    REASON_LEFTOVER,
    REASON_POD_REJECTED,
    Action,
    Decision,
    decide,
    decide_orphans,
)
from virtmigrate.controller.migration.observe import Lister, Listers, Observer, Seen, vm_of
from virtmigrate.controller.migration.pods import (
    agent_pod_name,
    new_abort_pod,
    new_agent_pod,
    new_target_pod,
    new_witness_pod,
)
from virtmigrate.controller.podstate import PodView, pod_view
from virtmigrate.controller.vm import pods as vmpods
from virtmigrate.kube.resources import MIGRATIONS, PODS, VMS

log = structlog.get_logger("virtmigrate.migration")

JSON = dict[str, Any]
P = MigrationPhase
# The phases whose entry is an Event (`kubectl describe migration`): Pending while it waits (its
# WaitingForCapacity Event says why), Scheduling (the target launcher pod, from which node), the end.
# Scheduled, TargetReady and Running are in status.phaseTransitionTimestamps; the AgentCreated Event between
# names the agent pod and both nodes. Every Warning is an Event.
EVENT_PHASES = frozenset({P.PENDING, P.SCHEDULING, P.SUCCEEDED, P.FAILED})


class KubeWriter(Protocol):
    """The calls the migration controller makes past its caches (virtmigrate.kube.KubeClient)."""

    def get(self, res: Any, name: str, namespace: str | None = None) -> JSON: ...
    def create(self, res: Any, obj: JSON, namespace: str | None = None) -> JSON: ...
    def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = ...) -> JSON: ...
    def delete(self, res: Any, name: str, namespace: str | None = None, *,
               grace_period_seconds: int | None = None, uid: str | None = None,
               propagation_policy: str | None = None) -> JSON: ...


class MigrationSync:
    """The Migration reconciler. Thread-safe: the work queue never hands one key to two workers."""

    def __init__(self, listers: Listers, client: KubeWriter, *, config: ControllerConfig, clock: Clock,
                 recorder: EventRecorder, metrics: MigrationMetrics, identities: Identities | None = None) -> None:
        self.listers = listers
        self.client = client
        self.identities = identities or Identities(client)
        self.config = config
        self.clock = clock
        self.recorder = recorder
        self.metrics = metrics
        self._admit_lock = threading.Lock()
        self._admitted: set[str] = set()          # admitted by us, maybe not yet in the cache
        self._waiting: set[str] = set()           # Pending for capacity: woken when a slot frees up
        # Outcomes of agent pods already gone, by the owning Migration's uid (never by name: a new Migration
        # of the same name must not inherit one). A fallback only: the agent pod's finalizer keeps its
        # outcome readable in the API until it is recorded, so a restart that forgets this loses nothing.
        self._agent_exits: dict[str, tuple[str, int, str]] = {}  # uid -> (key, exit code, message)
        self._exits_lock = threading.Lock()
        self.observer = Observer(listers, config=config, clock=clock)
        # uids of Migrations this process deleted for the history limit that the cache may still show (the
        # delete's watch event not in yet): every finished Migration of a VM syncs, and each would otherwise
        # delete the same ones again. By VM key; invariant: only uids the cache still shows (trimmed on each
        # prune of their VM, a VM without any left has no entry). A restart forgets it harmlessly: a repeated
        # delete answers NotFound.
        self._pruned: dict[str, set[str]] = {}
        self._pruned_lock = threading.Lock()

    # --- memory fed by the controller's handlers ---------------------------------------------------

    def remember_agent_exit(self, migration_uid: str, code: int, message: str, *, key: str = "") -> None:
        with self._exits_lock:
            self._agent_exits[migration_uid] = (key, code, message)

    def forget(self, key: str) -> None:
        with self._exits_lock:
            for uid in [u for u, (k, _, _) in self._agent_exits.items() if k == key]:
                del self._agent_exits[uid]
        with self._admit_lock:
            self._admitted.discard(key)
            self._waiting.discard(key)

    def seen_admitted(self, key: str) -> None:
        """The cache shows `key` past Pending: local admission memory is no longer needed. Called by an inline
        handler for every update of an admitted Migration: the lock (which admissions hold while they decide)
        is taken only when there is something to drop (a set's membership test is atomic)."""
        if key not in self._admitted:
            return
        with self._admit_lock:
            self._admitted.discard(key)

    # --- sync ------------------------------------------------------------------------------------------

    def sync(self, key: str) -> Decision | None:
        """Take the next step for Migration `key`; None when it no longer exists."""
        raw = self.listers.migrations.get_by_key(key)
        if raw is None:
            self.forget(key)
            self._sweep_orphans(key)
            return None  # deleted: the finalizer guaranteed cleanup was finished
        seen = self._observe(key, raw)
        d = decide(seen.observed, self.config.timeouts)
        if d.action == Action.ADMIT:
            with self._admit_lock:  # capacity is decided and taken atomically across workers
                seen = self._observe(key, raw)  # again, under the lock: another worker may have admitted
                d = decide(seen.observed, self.config.timeouts)
                if d.action != Action.ADMIT:
                    self._act(key, seen, d)
                    return d
                # The slot is taken before the write, which runs unlocked: admissions of other
                # Migrations do not queue behind this one's API round trip.
                was_waiting = key in self._waiting
                self._admitted.add(key)
                self._waiting.discard(key)
            try:
                self._act(key, seen, d)
            except BaseException:
                with self._admit_lock:  # not written: the slot is free again, as if never taken
                    self._admitted.discard(key)
                    if was_waiting:
                        self._waiting.add(key)
                raise
            return d
        self._act(key, seen, d)
        if d.action == Action.WAIT_CAPACITY or d.reason == "waiting for capacity":
            with self._admit_lock:
                self._waiting.add(key)
        elif d.action == Action.NOTHING and history.finished(raw) is not None:
            self._prune_history(raw)
        return d

    def _sweep_orphans(self, key: str) -> None:
        """Agent and abort pods of Migration `key`, which no longer exists, as decide_orphans says."""
        ns = key.partition("/")[0]
        views = [v for p in self.listers.pods.by_index(POD_MIGRATION_INDEX, key)
                 if (p.get("metadata") or {}).get("labels", {}).get(LABEL_ROLE) in (ROLE_AGENT, ROLE_ABORT)
                 for v in [pod_view(p)] if v is not None]
        for action, pod in decide_orphans(views):
            log.info("orphan_agent_pod", migration=key, pod=pod.name, action=action.value)
            if action == Action.DELETE_AGENT_POD:
                self._delete_pod(ns, pod.name)
            else:
                self._remove_agent_finalizer(ns, pod)

    def _prune_history(self, raw: JSON) -> None:
        """`raw` is finished: apply the history limit to its VM's Migrations, as the cache shows them."""
        if self.config.history_limit < 0:
            return  # keep all
        ns, vm_name = str((raw.get("metadata") or {}).get("namespace", "")), vm_of(raw)
        cached = self.listers.migrations.by_index(MIGRATION_VM_INDEX, f"{ns}/{vm_name}")
        uids = {str((m.get("metadata") or {}).get("uid", "")) for m in cached}
        with self._pruned_lock:
            deleted = self._pruned.pop(f"{ns}/{vm_name}", set()) & uids  # still in the cache
            if deleted:
                self._pruned[f"{ns}/{vm_name}"] = deleted
                cached = [m for m in cached if (m.get("metadata") or {}).get("uid") not in deleted]
        plan = history.decide_prune(cached, self.config.history_limit)
        if plan.delete:
            history.prune_history(plan, namespace=ns, keep=self.config.history_limit, client=self.client,
                                  recorder=self.recorder,
                                  vm=history.vm_ref(self.listers.vms.get_by_key(f"{ns}/{vm_name}"), ns, vm_name))
            with self._pruned_lock:
                self._pruned.setdefault(f"{ns}/{vm_name}", set()).update(f.uid for f in plan.delete)

    # --- observe ---------------------------------------------------------------------------------------

    def admissible_pending(self) -> list[str]:
        """Pending keys that capacity would admit now (to wake them when a slot frees up). Called by inline
        handlers: when nobody waits it returns at once, without the lock admissions hold while they decide (a
        key added meanwhile is one whose worker decided before this call, as it would be after the lock)."""
        if not self._waiting:
            return []
        with self._admit_lock:
            if not self._waiting:
                return []  # nobody waits: skip the O(n) look at every Migration
            admissions = decide_admissions(self.observer.candidates(self._admitted), self.config.limits)
            return [k for k, a in admissions.items() if a.admit]

    def _observe(self, key: str, raw: JSON) -> Seen:
        with self._exits_lock:
            known = self._agent_exits.get(str((raw.get("metadata") or {}).get("uid", "")))
        agent_exit = (known[1], known[2]) if known is not None else None
        return self.observer.observe(key, raw, agent_exit=agent_exit, admitted=self._admitted)

    # --- act -----------------------------------------------------------------------------------------

    def _act(self, key: str, seen: Seen, d: Decision) -> None:
        if d.action == Action.NOTHING:
            return
        raw = seen.raw
        meta = raw.get("metadata") or {}
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        bound = log.bind(migration=key, action=d.action.value)
        status = raw.get("status") or {}
        now = self.clock.wall()
        a = d.action
        if a == Action.ADD_FINALIZER:
            self._patch_meta(raw, [*(meta.get("finalizers") or []), FINALIZER_MIGRATION])
        elif a == Action.REMOVE_FINALIZER:
            if d.delete_first:
                self._delete_pod(ns, d.delete_first)
            self._patch_meta(raw, [f for f in meta.get("finalizers") or [] if f != FINALIZER_MIGRATION])
            bound.info("migration_released", phase=status.get("phase"))
        elif a == Action.WAIT_CAPACITY:
            pending = self._enter_pending(raw, status, now, event=True)
            conds = st.with_condition(list(pending.get("conditions") or []), st.COND_WAITING_CAPACITY, "True",
                                      d.reason, d.message, now)
            self._patch_status(raw, {**pending, "conditions": conds})
            self._event(raw, NORMAL, d.reason, d.message)
        elif a == Action.ADMIT:
            vm_state = seen.observed.vm
            assert vm_state is not None and seen.mig is not None
            resolved = self._resolve_policy(seen)
            pending = self._enter_pending(raw, status, now, event=False)
            new = st.with_phase(pending, P.SCHEDULING, now, sourceNode=vm_state.node,
                                targetPod=seen.target_pod_name, agentPod=agent_pod_name(seen.mig),
                                migrationPolicy=resolved.policy_name or None,
                                migrationConfiguration=policies.configuration_status(resolved.settings))
            clamped = "; ".join(resolved.clamped)
            if clamped:  # the policy asked for more than the cluster allows: say what runs instead
                new["conditions"] = st.with_condition(list(new.get("conditions") or []), st.COND_POLICY_CLAMPED,
                                                      "True", st.COND_POLICY_CLAMPED, clamped, now)
            self._transition(raw, new, P.SCHEDULING,
                             f"creating target launcher pod {seen.target_pod_name} to receive VM "
                             f"{seen.observed.vm_name!r} from node {vm_state.node}")
            if clamped:  # after the write: a conflict retries admission, and the Event with it
                self._event(raw, WARNING, st.COND_POLICY_CLAMPED, clamped)
        elif a == Action.MARK_VM_MIGRATING:
            assert seen.vm is not None
            self._patch_vm(seen.vm, st.vm_migrating(
                seen.vm.raw.get("status") or {}, migration_name=name, migration_uid=seen.observed.uid,
                source_node=str(status.get("sourceNode") or seen.vm.node), target_pod=seen.target_pod_name,
                now=now))
        elif a == Action.CREATE_TARGET_POD:
            assert seen.vm is not None and seen.mig is not None and seen.merged is not None
            self._create_pod(raw, seen, new_target_pod(seen.vm, seen.mig, seen.merged))
        elif a == Action.MARK_UNSCHEDULABLE:
            conds = st.with_condition(list(status.get("conditions") or []), st.COND_UNSCHEDULABLE, "True",
                                      d.reason, d.message, now)
            self._patch_status(raw, {**status, "conditions": conds})
            self._event(raw, WARNING, d.reason, d.message)
        elif a == Action.SET_PHASE:
            self._set_phases(raw, seen, d, now)
        elif a == Action.CREATE_AGENT_POD:
            self._create_agent(raw, seen)
        elif a in (Action.SUCCEED, Action.FAIL):
            self._finish(raw, d, seen)
        elif a == Action.RECORD_VM_ON_TARGET:
            assert seen.vm is not None
            mode = str(((status.get("result") or {}).get("mode")) or "")
            self._patch_vm(seen.vm, st.vm_on_target(seen.vm.raw.get("status") or {},
                                                    target_node=str(status.get("targetNode") or ""),
                                                    target_pod=d.pod or seen.target_pod_name, mode=mode, now=now))
        elif a == Action.RECORD_VM_ON_SOURCE:
            assert seen.vm is not None
            self._patch_vm(seen.vm, st.vm_on_source(seen.vm.raw.get("status") or {},
                                                    reason=str(status.get("reason") or "Failed"), now=now,
                                                    pod=d.pod))
        elif a == Action.RECORD_VM_LOST:
            assert seen.vm is not None
            self._patch_vm(seen.vm, st.vm_lost(seen.vm.raw.get("status") or {}, reason=str(status.get("reason")),
                                               message=str(status.get("message") or ""), now=now))
        elif a == Action.FORCE_DELETE_AGENT_POD:
            ap = seen.observed.agent_pod
            assert ap is not None
            self._delete_pod(ns, ap.name, grace_period_seconds=0)
            self._event(raw, WARNING, "AgentForceDeleted", d.message)
        elif a == Action.REMOVE_AGENT_FINALIZER:
            assert seen.observed.agent_pod is not None
            self._remove_agent_finalizer(ns, seen.observed.agent_pod)
        elif a == Action.CREATE_ABORT_POD:
            assert seen.vm is not None and seen.mig is not None
            if self._create_pod(raw, seen, new_abort_pod(seen.vm, seen.mig, source_node=seen.observed.source_node,
                                                         image=self.config.agent_image)):
                self._event(raw, WARNING, d.reason, d.message)
        elif a == Action.DELETE_ABORT_POD:
            assert seen.observed.abort_pod is not None
            self._delete_pod(ns, seen.observed.abort_pod.name)
        elif a in (Action.DELETE_SOURCE_POD, Action.DELETE_TARGET_POD, Action.DELETE_WITNESS):
            self._delete_pod(ns, d.pod)
        elif a == Action.CREATE_WITNESS:
            assert seen.vm is not None and seen.mig is not None
            node = seen.observed.source_node if d.side == "source" else seen.observed.target_node
            if self._create_pod(raw, seen, new_witness_pod(seen.vm, seen.mig, side=d.side, node=node)):
                self._event(raw, WARNING, d.reason, d.message)
        elif a == Action.DELETE_AGENT_POD:
            ap = seen.observed.agent_pod
            assert ap is not None
            self._delete_pod(ns, ap.name)
            if seen.observed.deleting and (raw.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self._event(raw, NORMAL, "Cancelling", f"stopping agent pod {ap.name}: the agent aborts the "
                                                       "migration and checks the VM still runs on its source")
            elif d.message:
                self._event(raw, WARNING, d.reason, d.message)  # AgentStuck, AgentNodeLost
        bound.debug("migration_acted", reason=d.reason)

    def _set_phases(self, raw: JSON, seen: Seen, d: Decision, now: Any) -> None:
        """SET_PHASE, folding in the transitions the same cache already decides: the phase machine is asked
        again as if the new phase were recorded, and every further SET_PHASE (and the outcome of an agent
        that has already exited) joins the same status write. Each phase keeps its timestamp, log and metric."""
        status = raw.get("status") or {}
        steps: list[MigrationPhase] = []
        observed = seen.observed
        new: JSON = dict(status)
        while d.action == Action.SET_PHASE and d.phase is not None and len(steps) < 4:
            fields: dict[str, Any] = {"targetNode": d.target_node} if d.target_node else {}
            new = st.with_phase(new, d.phase, now, **fields)
            steps.append(d.phase)
            observed = dataclasses.replace(observed, phase=d.phase, phase_age_s=0.0,
                                           target_node=d.target_node or observed.target_node)
            d = decide(observed, self.config.timeouts)
        if d.action in (Action.SUCCEED, Action.FAIL) and steps[-1] == P.RUNNING:
            self._finish(raw, d, seen, via=(new, steps))  # the agent exited before we saw it run
            return
        self._transition(raw, new, steps[-1], steps[-1].value, via=steps[:-1])

    def _enter_pending(self, raw: JSON, status: JSON, now: Any, *, event: bool) -> JSON:
        """`status` in Pending (with its timestamp) if the Migration has no phase yet; `event`: with its Event
        (it stays Pending: admitted at once, its Scheduling Event says it all)."""
        if status.get("phase"):
            return status
        if event:
            self._event(raw, NORMAL, "Pending", f"Migration of VM {vm_of(raw)!r} accepted")
        return st.with_phase(status, P.PENDING, now)

    def _create_agent(self, raw: JSON, seen: Seen) -> None:
        status = raw.get("status") or {}
        assert seen.vm is not None and seen.mig is not None and seen.destination is not None
        dest = seen.destination
        policy = policies.configuration_from_status(status) or self._resolve_policy(seen).settings
        pod = new_agent_pod(seen.vm, seen.mig, source_node=str(status.get("sourceNode") or seen.vm.node),
                            dest=dest, policy=policy, service_account=self.config.agent_service_account,
                            image=self.config.agent_image, await_target=self.config.agent_early_start)
        if self._create_pod(raw, seen, pod):
            self._event(raw, NORMAL, "AgentCreated", f"agent pod {pod['metadata']['name']} migrates VM "
                                                     f"{seen.vm.name!r} from node {pod['spec']['nodeName']} to "
                                                     f"node {status.get('targetNode')} ({dest.libvirt_uri})")

    def _resolve_policy(self, seen: Seen) -> policies.Resolved:
        """The effective settings and the MigrationPolicy applied (migration/policies.py)."""
        assert seen.vm is not None and seen.mig is not None
        lp, ln = self.listers.policies, self.listers.namespaces
        namespace = ln.get_by_key(seen.mig.namespace) if ln is not None else None
        return policies.resolve(self.config.policy, lp.list() if lp is not None else [], namespace, seen.vm,
                                seen.mig, limits=self.config.policy_limits)

    def _finish(self, raw: JSON, d: Decision, seen: Seen, *,
                via: tuple[JSON, list[MigrationPhase]] | None = None) -> None:
        """-> Succeeded/Failed; `via`: the status and phases entered on the way, written in the same patch."""
        status = (raw.get("status") or {}) if via is None else via[0]
        phase = P.SUCCEEDED if d.action == Action.SUCCEED else P.FAILED
        result, text = st.split_result(d.result)
        message = d.message if not text or text in d.message else f"{d.message}: {text}"
        extra: JSON = {} if result is None else {"result": result}
        if phase == P.SUCCEEDED:
            extra["progress"] = st.completed_progress(status.get("progress"), result)
        new = st.with_phase(status, phase, self.clock.wall(), reason=d.reason, message=message, **extra)
        self._transition(raw, new, phase, message, etype=NORMAL if phase == P.SUCCEEDED else WARNING,
                         reason=d.reason if phase == P.FAILED else "Succeeded", via=via[1] if via else ())
        if d.warning:
            self._event(raw, WARNING, REASON_LEFTOVER, d.warning)
        if d.reason in LOST_REASONS:
            self.metrics.guests_lost.labels(reason=d.reason).inc()
        created = st.parse_time((raw.get("metadata") or {}).get("creationTimestamp"))
        duration = (self.clock.wall() - created).total_seconds() if created else None
        r = result or {}
        self.metrics.finished(phase.value, d.reason, duration_s=duration,
                              data_processed=r.get("dataProcessed"), downtime_ms=r.get("downtimeMs"))

    # --- API writes --------------------------------------------------------------------------------

    def _transition(self, raw: JSON, new: JSON, phase: MigrationPhase, message: str, *,
                    etype: str = NORMAL, reason: str = "",
                    via: Sequence[MigrationPhase] = ()) -> None:
        """One status write to `new` in `phase`, after passing through the phases `via`: the metrics and logs
        are those of one transition per phase; the Event (with `message`) is the new phase's, if it has one
        (EVENT_PHASES)."""
        old = raw.get("status") or {}
        self._patch_status(raw, new)
        entered = st.phase_entered(old, old.get("phase"))
        if entered is not None and old.get("phase"):
            self.metrics.phase_seconds.labels(phase=old["phase"]).observe(
                max((self.clock.wall() - entered).total_seconds(), 0.0))
        prior = old.get("phase")
        for step in via:
            log.info("migration_phase", migration=object_key(raw), old=prior, new=step.value, reason=None)
            self.metrics.phase_seconds.labels(phase=step.value).observe(0.0)
            prior = step.value
        log.info("migration_phase", migration=object_key(raw), old=prior, new=phase.value,
                 reason=reason or None)
        if phase in EVENT_PHASES:
            self._event(raw, etype, reason or phase.value, message)

    def _patch_status(self, raw: JSON, new: Mapping[str, Any]) -> None:
        meta = raw.get("metadata") or {}
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                 "status": st.status_patch(raw.get("status") or {}, new)}
        self.client.patch(MIGRATIONS, meta["name"], patch, meta.get("namespace"), subresource="status")

    def _patch_meta(self, raw: JSON, finalizers: list[str]) -> None:
        meta = raw.get("metadata") or {}
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion"), "finalizers": finalizers}}
        with contextlib.suppress(errors.NotFound):  # already gone: nothing left to hold
            self.client.patch(MIGRATIONS, meta["name"], patch, meta.get("namespace"))

    def _patch_vm(self, vm: VM, new_status: Mapping[str, Any]) -> None:
        meta = vm.raw.get("metadata") or {}
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                 "status": st.status_patch(vm.raw.get("status") or {}, new_status)}
        self.client.patch(VMS, vm.name, patch, vm.namespace, subresource="status")

    def _create_pod(self, raw: JSON, seen: Seen, pod: JSON) -> bool:
        """Create `pod` (True when this call created it). AlreadyExists is a retried step (the deterministic
        name is ours); a pod the API server refuses for good (422 Invalid, 403 Forbidden: admission, quota,
        Pod Security) fails the Migration with the server's message instead of retrying forever."""
        ns = str(pod["metadata"]["namespace"])
        self.identities.ensure(ns)
        pod = vmpods.with_node_access(pod, self.config.node_access)
        try:
            self.client.create(PODS, pod, ns)
        except errors.AlreadyExists:
            return False
        except (errors.Invalid, errors.Forbidden) as e:
            self.identities.forget(ns)  # e.g. its ServiceAccount was deleted: make it again next time
            self._finish(raw, Decision(Action.FAIL, reason=REASON_POD_REJECTED,
                                       message=f"the API server refused pod {pod['metadata']['name']}: {e}"), seen)
            return False
        return True

    def _remove_agent_finalizer(self, namespace: str, pod: PodView) -> None:
        with contextlib.suppress(errors.NotFound):  # already gone
            self.client.patch(PODS, pod.name, {"metadata": {"uid": pod.uid, "finalizers": [
                f for f in pod.finalizers if f != FINALIZER_AGENT]}}, namespace)

    def _delete_pod(self, namespace: str, name: str, *, grace_period_seconds: int | None = None) -> None:
        with contextlib.suppress(errors.NotFound):  # already gone
            self.client.delete(PODS, name, namespace, grace_period_seconds=grace_period_seconds)

    def _event(self, raw: JSON, etype: str, reason: str, message: str) -> None:
        obj = raw if raw.get("kind") else {**raw, "kind": "Migration", "apiVersion": "kubevirt.io/v1alpha1"}
        self.recorder.event(obj, etype, reason, message)


__all__ = ["KubeWriter", "Lister", "Listers", "MigrationSync"]
