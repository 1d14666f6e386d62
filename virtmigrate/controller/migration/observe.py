"""What sync(key) observes: the Migration, its VM, the source/target launcher pods and the agent pod,
capacity and placement, reduced to the phase machine's pure `Observed`.

Fed by: the informers' caches (read-only, through `Lister`s) and the controller configuration.
Consumed by: migration/execute.py, which decides on `Seen.observed` and acts with the other fields.
No writes, no clock reads beyond the wall time the caller's clock gives for phase ages.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from virtmigrate import errors
from virtmigrate.api.constants import FINALIZER_MIGRATION, LABEL_EVACUATION, LABEL_ROLE, ROLE_LAUNCHER, MigrationPhase
from virtmigrate.api.migration import Migration, MigrationSpec
from virtmigrate.api.vm import VM
from virtmigrate.clock import Clock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.indexes import MIGRATION_VM_INDEX, POD_VM_INDEX
from virtmigrate.controller.migration import placement as placement
from virtmigrate.controller.migration import status as st
from virtmigrate.controller.migration.active import ACTIVE_ALL, ACTIVE_INDEX, vm_value
from virtmigrate.controller.migration.capacity import PRIORITY_EVACUATION, PRIORITY_USER, Candidate, decide_admission
from virtmigrate.controller.migration.decide import REASON_INVALID_DESTINATION, Observed, VMState, phase_age
from virtmigrate.controller.migration.locate import read_sides
from virtmigrate.controller.migration.pods import (
    Destination,
    abort_pod_name,
    agent_pod_name,
    compute_destination,
    target_pod_name,
    witness_pod_name,
)
from virtmigrate.controller.podstate import PodView, node_lost, pod_view
from virtmigrate.controller.policy import compute_effective_policy, destination_problem, image_path_problem
from virtmigrate.informer.memo import Memo

JSON = dict[str, Any]
P = MigrationPhase
ADMITTED = frozenset({P.SCHEDULING, P.SCHEDULED, P.TARGET_READY, P.RUNNING})
_PHASES = frozenset(p.value for p in MigrationPhase)


class Lister(Protocol):
    """The read side of an informer's store (virtmigrate.informer.Store)."""

    def get_by_key(self, key: str) -> JSON | None: ...
    def list(self) -> builtins.list[JSON]: ...
    def by_index(self, index_name: str, value: str) -> builtins.list[JSON]: ...
    def index_count(self, index_name: str, value: str) -> int: ...



@dataclass(frozen=True)
class Listers:
    migrations: Lister
    vms: Lister
    pods: Lister
    nodes: Lister
    policies: Lister | None = None    # MigrationPolicies (cluster-scoped); None: no policy applies
    namespaces: Lister | None = None  # Namespaces, for the policies' namespaceSelector


@dataclass
class Seen:
    """What one sync saw; `_act` needs the objects, the decision needs only `observed`."""

    raw: JSON
    mig: Migration | None
    vm: VM | None
    observed: Observed
    target_pod_name: str
    source_pod: PodView | None
    merged: placement.Merged | None
    destination: Destination | None = None

@dataclass(frozen=True, slots=True)
class _MigrationFacts:
    """What observe reads of one version of a Migration object."""

    mig: Migration | None
    spec_error: str
    policy_violation: str                 # the spec's fields beyond the cluster's limits ("" when none)
    uid: str
    vm_name: str
    phase: MigrationPhase | None
    entered_at: _dt.datetime | None       # when the current phase was entered
    has_created: bool                     # metadata.creationTimestamp is set
    created_at: _dt.datetime | None
    entered: frozenset[str]               # every phase it has been in
    agent_name: str                       # status.agentPod, else the derived name ("" without a spec)
    abort_name: str                       # "" without a spec
    target_name: str                      # status.targetPod ("" until admitted)


@dataclass(frozen=True, slots=True)
class _SpecFacts:
    """What observe derives of one generation of a Migration's spec and its identity (the same for every
    status write of it): the parsed spec, its policy violations, the names of its agent and abort pods."""

    spec: MigrationSpec
    policy_violation: str
    agent_name: str
    abort_name: str


@dataclass(frozen=True, slots=True)
class _VMFacts:
    """What observe reads of one version of a VM object."""

    vm: VM | None
    error: str                            # why the VM is invalid ("" when it is fine)
    state: VMState


@dataclass(frozen=True, slots=True)
class _ChildNames:
    target: str
    source_witness: str
    target_witness: str


def _child_names(facts: _MigrationFacts, vm: VM | None) -> _ChildNames:
    """The names of the pods a Migration makes for its VM (derived from both uids)."""
    mig = facts.mig
    target = facts.target_name or (target_pod_name(mig, vm) if mig is not None and vm is not None else "")
    if mig is None or vm is None:
        return _ChildNames(target, "", "")
    return _ChildNames(target, witness_pod_name(mig, vm, "source"), witness_pod_name(mig, vm, "target"))


class Observer:
    """Reads the caches for sync(key)."""

    def __init__(self, listers: Listers, *, config: ControllerConfig, clock: Clock) -> None:
        self.listers = listers
        self.config = config
        self.clock = clock
        self._end_seen: dict[str, float] = {}  # Migration uid -> when this process first saw its agent ended
        self._end_lock = threading.Lock()
        # What sync parses of the cached objects, once per object version (a key syncs on every event of
        # its pods and VM): by Migration key, VM key and pod key. Invariant: entries of active Migrations
        # only (and their VMs and pods) — a finished Migration's sync drops its own and its VM's (each pins
        # versions the cache has replaced), placement goes once past Scheduling, a pod's with the pod.
        self._memo_migration: Memo[_MigrationFacts] = Memo()
        self._memo_spec: Memo[_SpecFacts] = Memo()  # by Migration key, per (uid, generation)
        self._memo_vm: Memo[_VMFacts] = Memo()
        self._memo_names: Memo[_ChildNames] = Memo()
        self._memo_pods: Memo[PodView | None] = Memo(maxsize=16384)
        self._memo_merge: Memo[placement.Merged | placement.Contradiction] = Memo()

    def observe(self, key: str, raw: JSON, *, agent_exit: tuple[int, str] | None,
                admitted: Collection[str]) -> Seen:
        """What the phase machine needs about Migration `key` (`raw`, from the cache), plus the objects
        the actions need. `admitted`: keys this controller admitted that the cache may not show yet."""
        meta = raw.get("metadata") or {}
        status = raw.get("status") or {}
        ns = str(meta.get("namespace", ""))
        finished = status.get("phase") in (P.SUCCEEDED, P.FAILED) and not meta.get("finalizers")
        if finished:
            facts = self._migration_facts(raw)  # finished history syncs once: not worth its memory
        else:
            facts = self._memo_migration.get(key, (raw,), lambda: self._migration_facts(raw, key=key))
        mig, vm_name, phase = facts.mig, facts.vm_name, facts.phase
        spec_error = facts.spec_error
        vm_key = f"{ns}/{vm_name}"
        vm_raw = self.listers.vms.get_by_key(vm_key) if vm_name else None
        vm: VM | None = None
        vm_state: VMState | None = None
        if vm_raw is not None:
            vm_facts = (self._vm_facts(ns, vm_name, vm_raw) if finished else
                        self._memo_vm.get(vm_key, (vm_raw,), lambda: self._vm_facts(ns, vm_name, vm_raw)))
            vm, vm_state = vm_facts.vm, vm_facts.state
            spec_error = spec_error or vm_facts.error
        uid = facts.uid
        if finished:
            # Its parsed forms held the versions it had while active (and its VM's): the cache has moved on.
            names = _child_names(facts, vm)
            self.forget(migration=key, vm=vm_key)
        else:
            # The names hash both uids: a new version of either object names the same pods.
            name_deps = ((facts.uid, vm.uid, vm.name, facts.target_name) if vm is not None and mig is not None
                         else (raw, vm_raw))
            names = self._memo_names.get(key, name_deps, lambda: _child_names(facts, vm))
            if phase not in (None, P.PENDING, P.SCHEDULING):
                self._memo_merge.forget(key)  # placement is read up to Scheduling only
        target_name = names.target
        agent_name = facts.agent_name
        target_pod = self.pod(ns, target_name)
        agent_pod = self.pod(ns, agent_name)
        source_node = str(status.get("sourceNode") or (vm_state.node if vm_state else ""))
        witness_names = {"source": names.source_witness, "target": names.target_witness}
        source_pod = self.source_pod(ns, vm_name, source_node, {target_name, *witness_names.values()}, vm_state)
        now = self.clock.wall()
        observed: dict[str, Any] = dict(
            uid=uid, vm_name=vm_name, phase=phase, deleting=bool(meta.get("deletionTimestamp")),
            has_finalizer=FINALIZER_MIGRATION in (meta.get("finalizers") or []),
            phase_age_s=phase_age(facts.entered_at, now), spec_error=spec_error, vm=vm_state,
            age_s=phase_age(facts.created_at, now) if facts.has_created else float("inf"),
            target_node=str(status.get("targetNode") or ""), source_pod=source_pod, target_pod=target_pod,
            agent_pod=agent_pod,
        )
        observed["agent_exit"] = agent_exit or _agent_outcome(status)
        abort_pod = self.pod(ns, facts.abort_name)
        witnesses = {side: self.pod(ns, name) for side, name in witness_names.items()}
        entered = facts.entered
        sides = read_sides(source_pod, target_pod, source_witness=witnesses["source"],
                           target_witness=witnesses["target"],
                           target_created=P.TARGET_READY.value in entered or phase in (P.TARGET_READY, P.RUNNING))
        observed.update(
            status_reason=str(status.get("reason") or ""), source_node=source_node, abort_pod=abort_pod,
            agent_name=str(status.get("agentPod") or ""),
            entered=entered,
            source_where=sides.source, target_where=sides.target, source_mute=sides.source_mute,
            target_mute=sides.target_mute, source_witness=witnesses["source"], target_witness=witnesses["target"],
            agent_end_age_s=_agent_end_age(agent_pod, observed["phase_age_s"], now),
            agent_end_seen_s=self._end_seen_age(uid, phase, ended=observed["agent_exit"] is not None or (
                agent_pod.terminated if agent_pod is not None else phase == P.RUNNING)),
            agent_stop_age_s=_stop_age(agent_pod, now),
            agent_forced=agent_pod is not None and agent_pod.deleting and agent_pod.deletion_grace_s == 0,
            early_agent=self.config.agent_early_start and bool(self.config.agent_service_account),
            agent_node_lost=agent_pod is not None and bool(agent_pod.node) and not agent_pod.terminated
            and node_lost(self.listers.nodes.get_by_key(agent_pod.node)))
        if mig is not None:
            observed["policy_violation"] = facts.policy_violation
        destination: Destination | None = None
        # The agent's destination, where the next step may create the agent: at TargetReady, or from Scheduled on
        # for an early agent.
        if agent_pod is None and (phase == P.TARGET_READY or (phase == P.SCHEDULED and observed["early_agent"])):
            node = self.listers.nodes.get_by_key(observed["target_node"])
            refused = destination_problem(node) if node is not None else ""
            if refused:
                observed["destination_error"], observed["destination_reason"] = refused, REASON_INVALID_DESTINATION
            else:
                destination, observed["destination_error"] = self.destination(observed["target_node"])
        merged: placement.Merged | None = None
        # Selection, placement and capacity matter only where the phase machine reaches _decide_pending:
        # a Migration without our finalizer first gets it (capacity is O(active Migrations)).
        pending = phase in (None, P.PENDING) and not observed["deleting"] and observed["has_finalizer"]
        if pending and vm is not None and mig is not None and vm_state is not None and vm_state.running:
            observed["competitor"], observed["finishing"] = self.competitor(key, raw, vm_state)
            result = self._merge(key, raw, vm_raw, vm, mig, source_node)
            if isinstance(result, placement.Contradiction):
                observed["contradiction"] = result.message
            else:
                merged = result
            cond = st.condition(status, st.COND_WAITING_CAPACITY)
            observed["conditions_message"] = (cond or {}).get("message", "") if (cond or {}).get(
                "status") == "True" else ""
            if not self.limits_can_bind():
                observed["admit"] = True
            else:
                adm = decide_admission(key, self.candidates(admitted), self.config.limits)
                observed["admit"], observed["capacity_message"] = adm.admit, adm.message
        elif phase == P.SCHEDULING and vm is not None and mig is not None:
            cond = st.condition(status, st.COND_UNSCHEDULABLE)
            observed["conditions_message"] = (cond or {}).get("message", "") if (cond or {}).get(
                "status") == "True" else ""
            if target_pod is not None and target_pod.unschedulable:
                result = self._merge(key, raw, vm_raw, vm, mig, source_node)
                if isinstance(result, placement.Merged):
                    observed["infeasible"] = placement.explain(
                        self.listers.nodes.list(), self.listers.pods.list(), result, vm)
            elif target_pod is None:
                result = self._merge(key, raw, vm_raw, vm, mig, source_node)
                if isinstance(result, placement.Contradiction):
                    observed["contradiction"] = result.message
                else:
                    merged = result
        return Seen(raw=raw, mig=mig, vm=vm, observed=Observed(**observed),
                    target_pod_name=target_name, source_pod=source_pod, merged=merged, destination=destination)

    # --- parsed once per object version (informer/memo.py: store objects never change in place) ---------

    def forget(self, *, migration: str = "", vm: str = "", pod: str = "") -> None:
        """An object left its store (by key): what was parsed of it goes too."""
        if migration:
            self._memo_migration.forget(migration)
            self._memo_spec.forget(migration)
            self._memo_names.forget(migration)
            self._memo_merge.forget(migration)
        if vm:
            self._memo_vm.forget(vm)
        if pod:
            self._memo_pods.forget(pod)

    def pod(self, ns: str, name: str) -> PodView | None:
        """The view of pod `ns/name` as the cache shows it; None when there is none (or no name)."""
        if not name:
            return None
        key = f"{ns}/{name}"
        raw = self.listers.pods.get_by_key(key)
        if raw is None:
            return None
        return self._memo_pods.get(key, (raw,), lambda: pod_view(raw))

    def _migration_facts(self, raw: JSON, *, key: str = "") -> _MigrationFacts:
        """What observe reads of this version of `raw`; with `key`, what its spec and identity give is
        reused from an earlier version of the same generation (`_memo_spec`)."""
        meta = raw.get("metadata") or {}
        status = raw.get("status") or {}
        phase_s = status.get("phase")
        spec_error = ""
        mig: Migration | None = None
        known = self._memo_spec.peek(key, _generation(raw)) if key else None
        try:
            mig = Migration.parse(raw, spec=known.spec if known is not None else None)
        except errors.ValidationError as e:
            spec_error = str(e)
        if mig is not None and known is None:
            known = _SpecFacts(
                spec=mig.spec, agent_name=agent_pod_name(mig), abort_name=abort_pod_name(mig),
                policy_violation="; ".join(compute_effective_policy(
                    self.config.policy, self.config.policy_limits, mig.spec.policy).violations))
            if key:
                self._memo_spec.put(key, _generation(raw), known)
        ok = known if mig is not None else None  # an invalid object keeps nothing of an earlier version
        return _MigrationFacts(
            mig=mig, spec_error=spec_error, policy_violation=ok.policy_violation if ok is not None else "",
            uid=str(meta.get("uid", "")), vm_name=vm_of(raw),
            phase=MigrationPhase(phase_s) if isinstance(phase_s, str) and phase_s in _PHASES else None,
            entered_at=st.phase_entered(status, phase_s), has_created=bool(meta.get("creationTimestamp")),
            created_at=st.parse_time(meta.get("creationTimestamp")),
            entered=frozenset(str(e.get("phase")) for e in status.get("phaseTransitionTimestamps") or []),
            agent_name=str(status.get("agentPod") or (ok.agent_name if ok is not None else "")),
            abort_name=ok.abort_name if ok is not None else "",
            target_name=str(status.get("targetPod") or ""))

    def _vm_facts(self, ns: str, vm_name: str, vm_raw: JSON) -> _VMFacts:
        vm: VM | None = None
        error = ""
        try:
            vm = VM.parse(vm_raw)
            paths = image_path_problem(ns, vm.spec.kernel, vm.spec.disk, self.config.image_dirs)
            if paths:
                raise errors.ValidationError(paths)
        except errors.ValidationError as e:
            error = f"VM {vm_name!r} is invalid: {e}"
        return _VMFacts(vm=vm, error=error, state=_vm_state(vm_raw))

    def _merge(self, key: str, raw: JSON, vm_raw: JSON | None, vm: VM, mig: Migration,
               source_node: str) -> placement.Merged | placement.Contradiction:
        """Placement reads the two specs (and names): a status write of either leaves it as it was."""
        deps = (*_generation(raw), *(_generation(vm_raw) if vm_raw is not None else (None,)), source_node)
        return self._memo_merge.get(key, deps, lambda: placement.merge(
            vm, mig, source_node=source_node, config=self.config))

    def _end_seen_age(self, uid: str, phase: P | None, *, ended: bool) -> float:
        """Seconds since this process first saw the agent ended (0 while it runs). Reports delayed with the
        agent's own status (an API server that was down, a restarted controller) still get the whole settle
        wait to arrive."""
        with self._end_lock:
            if phase is None or phase.terminal or not ended:
                self._end_seen.pop(uid, None)
                return 0.0
            first = self._end_seen.setdefault(uid, self.clock.now())
        return self.clock.now() - first

    def destination(self, target_node: str) -> tuple[Destination | None, str]:
        """How the source reaches the target node's libvirt, or "" and why not."""
        node = self.listers.nodes.get_by_key(target_node) or {}
        dest = compute_destination(node, uri_template=self.config.destination_uri_template,
                                   migration_uri_template=self.config.migration_uri_template)
        if not dest.libvirt_uri:
            return None, (f"node {target_node} has no libvirt-uri annotation and no InternalIP: annotate it "
                          "with virtmigrate.kubevirt.io/libvirt-uri")
        return dest, ""

    def source_pod(self, ns: str, vm_name: str, source_node: str, not_these: Collection[str],
                    vm_state: VMState | None) -> PodView | None:
        """The VM's launcher pod on the source node (not the target pod nor this Migration's witnesses)."""
        if not vm_name:
            return None
        best: JSON | None = None
        for pod in self.listers.pods.by_index(POD_VM_INDEX, f"{ns}/{vm_name}"):
            meta = pod.get("metadata") or {}
            if (meta.get("labels") or {}).get(LABEL_ROLE) != ROLE_LAUNCHER or meta.get("name") in not_these:
                continue
            if source_node and (pod.get("spec") or {}).get("nodeName") != source_node:
                continue
            if best is None or (vm_state is not None and meta.get("name") == vm_state.launcher_pod):
                best = pod
        if best is None:
            return None
        best_key = f"{ns}/{(best.get('metadata') or {}).get('name', '')}"
        return self._memo_pods.get(best_key, (best,), lambda: pod_view(best))

    def competitor(self, key: str, raw: JSON, vm_state: VMState) -> tuple[str, str]:
        """(another Migration that holds or has precedence on the VM, another one that ended but still
        cleans up); "" where there is none."""
        me = _order(raw)
        ns = (raw.get("metadata") or {}).get("namespace", "")
        finishing = ""
        # Finished history (terminal, no finalizer) neither holds the VM nor cleans up: active ones only.
        for other in self.listers.migrations.by_index(ACTIVE_INDEX, vm_value(ns, vm_of(raw))):
            ometa = other.get("metadata") or {}
            if f"{ometa.get('namespace')}/{ometa.get('name')}" == key:
                continue
            ophase = (other.get("status") or {}).get("phase")
            if ophase in (P.SUCCEEDED, P.FAILED):
                if FINALIZER_MIGRATION in (ometa.get("finalizers") or []):
                    finishing = str(ometa.get("name", ""))
                continue
            if ophase in ADMITTED or _order(other) < me:
                return str(ometa.get("name", "")), finishing
        if (vm_state.migration_uid and vm_state.migration_uid != (raw.get("metadata") or {}).get("uid")
                and not vm_state.migration_completed):
            for other in self.listers.migrations.by_index(MIGRATION_VM_INDEX, f"{ns}/{vm_of(raw)}"):
                ometa = other.get("metadata") or {}
                if ometa.get("uid") == vm_state.migration_uid:
                    return str(ometa.get("name", "")), finishing
        return "", finishing

    def limits_can_bind(self) -> bool:
        """False when fewer Migrations are active than either limit allows: every one can run at once, so
        capacity admits without looking at them. O(1): a count kept by the active index."""
        limits = self.config.limits
        return self.listers.migrations.index_count(ACTIVE_INDEX, ACTIVE_ALL) > min(limits.max_running,
                                                                                   limits.max_per_node)

    def candidates(self, admitted: Collection[str]) -> list[Candidate]:
        """Every active served Migration as capacity sees it; `admitted` counts as active though still
        Pending. O(active): finished history is in no value of the active index."""
        out: list[Candidate] = []
        served = frozenset(self.config.namespaces)
        for m in self.listers.migrations.by_index(ACTIVE_INDEX, ACTIVE_ALL):
            meta = m.get("metadata") or {}
            if served and meta.get("namespace") not in served:
                continue  # another controller's Migrations (a cache wider than the served namespaces)
            status = m.get("status") or {}
            phase = status.get("phase")
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if phase in ADMITTED or (phase in (None, P.PENDING) and key in admitted):
                node = str(status.get("sourceNode") or "")
                out.append(Candidate(key, str(meta.get("creationTimestamp", "")), node, active=True))
            elif phase in (None, P.PENDING) and not meta.get("deletionTimestamp"):
                vm = self.listers.vms.get_by_key(f"{meta.get('namespace')}/{vm_of(m)}") or {}
                node = str((vm.get("status") or {}).get("node") or "")
                evacuation = LABEL_EVACUATION in (meta.get("labels") or {})
                out.append(Candidate(key, str(meta.get("creationTimestamp", "")), node, active=False,
                                     priority=PRIORITY_EVACUATION if evacuation else PRIORITY_USER))
        return out


def _agent_end_age(agent: PodView | None, phase_age_s: float, now: _dt.datetime) -> float:
    """Seconds since the agent ended: its container's finishedAt; for a pod that vanished (or ended with
    no time recorded), the time in the current phase — an upper bound the settle wait can trust."""
    if agent is not None and agent.terminated:
        ended = st.parse_time(agent.finished_at)
        if ended is not None:
            return max((now - ended).total_seconds(), 0.0)
    return phase_age_s


def _agent_outcome(status: Mapping[str, Any]) -> tuple[int, str] | None:
    """The claim the agent wrote on the Migration when its job ended (status.agentOutcome): its exit code and
    termination message, read like its pod's (and, like them, checked against the nodes)."""
    claim = status.get("agentOutcome")
    if not isinstance(claim, Mapping) or not isinstance(claim.get("exitCode"), int):
        return None
    return int(claim["exitCode"]), str(claim.get("terminationMessage") or "")


def _stop_age(agent: PodView | None, now: _dt.datetime) -> float:
    """Seconds since the agent pod was asked to stop (deletionTimestamp minus its grace period). A force-delete
    (grace 0) moves the deletionTimestamp to its own moment, so for a forced pod this counts from the force."""
    if agent is None or not agent.deleted_at:
        return 0.0
    forced_at = st.parse_time(agent.deleted_at)
    if forced_at is None:
        return 0.0
    return max((now - forced_at).total_seconds() + agent.deletion_grace_s, 0.0)


def _vm_state(vm_raw: Mapping[str, Any]) -> VMState:
    status = vm_raw.get("status") or {}
    ms = status.get("migrationState") or {}
    running = status.get("phase") in ("Running", "Migrating") and bool(status.get("node"))
    return VMState(running=running, node=str(status.get("node") or ""),
                   launcher_pod=str(status.get("launcherPod") or ""),
                   migration_uid=str(ms.get("migrationUID") or ""), migration_completed=bool(ms.get("completed")))


def _generation(raw: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies one generation of `raw`'s spec: its uid and metadata.generation (the API server
    bumps it on every spec change, not on status writes); without a generation (objects made by hand),
    the object itself, compared by identity."""
    meta = raw.get("metadata") or {}
    generation = meta.get("generation")
    if not isinstance(generation, int) or not meta.get("uid"):
        return (raw,)
    return (str(meta["uid"]), generation)


def vm_of(raw: Mapping[str, Any]) -> str:
    return str(((raw.get("spec") or {}).get("selector") or {}).get("name") or "")


def _order(raw: Mapping[str, Any]) -> tuple[str, str]:
    meta = raw.get("metadata") or {}
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))
