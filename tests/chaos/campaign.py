"""The campaign: a pool of VMs, then rounds of migrations with one planned fault each, checked and summarised.

Driven by __main__.py (make chaos) and tests/e2e/test_chaos.py on a running `LocalCluster`. One round:

    1. read where each guest runs and its heartbeat counter (the facts the round must preserve);
    2. create one Migration per VM (bandwidths from the plan) — all in flight at once;
    3. a fault thread waits for the plan's trigger on the victim, sleeps the delay and does the harm (plus
       what a supervisor would do: restart the controller, node runner or API server after the pause);
       a cancel thread deletes the victim at its own moment when the plan says a cancel races the fault;
    4. poll the facts until every invariant holds (recovered: the time from the fault is the recovery) or
       the bound runs out (what still fails are the round's violations, printed with seed, round, fault
       and timing, and the replay command);
    5. delete the round's Migrations (a finalizer that never lets go is a violation too); after a
       violation, rebuild what the round broke — the cluster's processes through `up()`, each harmed VM
       from scratch — so later rounds test the product, not the wreckage.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from tests.chaos import faults
from tests.chaos.facts import PodWatch, heartbeat, never_started_records, node_domains, snapshot, status_file
from tests.chaos.harm import TRIGGER_TIMEOUT_S, Harm, RoundState
from tests.chaos.invariants import Expect, Kind, Violation, violations
from tests.chaos.plan import Fault, plan_round
from tests.chaos.report import RoundResult, Summary
from virtmigrate import errors
from virtmigrate.kube.resources import MIGRATIONS, NAMESPACES, PODS, VMS

MEMORY_MIB = 48
RECOVERY_BOUND_S = 90.0       # from the fault until every invariant must hold (default)
HEARTBEAT_WINDOW_S = 2.2      # the guest beats once a second: two beats must show in this window
DELETE_BOUND_S = 30.0         # deleting a terminal Migration finishes within this
POOL_BOUND_S = 180.0          # a new VM runs and beats within this
POLL_S = 0.3


def _now() -> float:
    return time.monotonic()


class Campaign:
    """A pool of VMs in a namespace of its own on `lc`, and the rounds run on it (`setup`, `run`, `teardown`)."""

    def __init__(self, lc: Any, *, seed: int, kernel: Path, vms: int = 3, log: Callable[[str], None] = print,
                 report: Path | None = None, recovery_bound_s: float = RECOVERY_BOUND_S,
                 skip: frozenset[Fault] = frozenset()) -> None:
        self.lc = lc
        self.seed = seed
        self.kernel = kernel
        self.vms = [f"vm{i}" for i in range(vms)]
        self.log = log
        self.report = report
        self.recovery_bound_s = recovery_bound_s
        self.skip = skip
        self.client = lc.client()
        self.namespace = f"chaos-{seed}-{uuid.uuid4().hex[:5]}"
        self.watch = PodWatch(self.client, self.namespace)
        self.harm = Harm(lc, self.client, self.namespace, self.watch)
        self.results: list[RoundResult] = []
        self.repairs = 0
        self.records_cleared = 0  # libvirt records of never-started copies cleared, as an admin would
        self.started = _now()
        self._lock: IO[str] | None = None  # the cluster's chaos.lock, flock-ed from setup until teardown

    # --- pool -------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Take the cluster's campaign lock (two campaigns on one cluster would harm each other's rounds),
        then make the pool: a namespace, its pod identities, the VMs, each running and beating."""
        lock = open(Path(self.lc.state) / "chaos.lock", "a+")  # noqa: SIM115 - held until teardown
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            lock.close()
            raise RuntimeError(f"another chaos campaign runs on the cluster in {self.lc.state} ({holder}); "
                               "wait for it or use another $VIRTMIGRATE_STATE") from None
        self._lock = lock
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}, namespace {self.namespace}\n")
        lock.flush()
        self.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": self.namespace}})
        self.lc.grant_agent_progress(self.namespace)
        self.watch.start()
        for vm in self.vms:
            self._create_vm(vm)
        for vm in self.vms:
            self._wait_vm_beating(vm)

    def teardown(self) -> None:
        if self._lock is None:
            return  # setup never took the lock: the pool, if any, belongs to another campaign
        self.watch.stop()
        for m in self._list(MIGRATIONS):
            self._force_delete_migration(m["metadata"]["name"])
        for vm in self.vms:
            with contextlib.suppress(errors.NotFound):
                self.client.delete(VMS, vm, self.namespace)
        deadline = _now() + 60
        while _now() < deadline and (self._list(VMS) or self._list(PODS)):
            time.sleep(0.5)
        for p in self._list(PODS):  # a VM that could not stop its guest in time: do not leak its pods
            with contextlib.suppress(errors.NotFound):
                self.client.delete(PODS, p["metadata"]["name"], self.namespace, grace_period_seconds=0)
        self._destroy_domains(self.vms)
        with contextlib.suppress(errors.KubeError):
            self.client.delete(NAMESPACES, self.namespace)
        self._lock.close()  # releases the flock
        self._lock = None

    def _list(self, res: Any) -> list[dict[str, Any]]:
        try:
            out: list[dict[str, Any]] = self.client.list_all(res, self.namespace)
            return out
        except errors.KubeError:
            return []

    def _create_vm(self, vm: str) -> None:
        self.client.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
                                 "metadata": {"name": vm, "namespace": self.namespace},
                                 "spec": {"running": True, "memory": f"{MEMORY_MIB}Mi", "kernel": str(self.kernel)}},
                           self.namespace)

    def _domain(self, vm: str) -> str:
        return f"{self.namespace}_{vm}"

    def _wait_vm_beating(self, vm: str) -> tuple[str, int]:
        deadline = _now() + POOL_BOUND_S
        while _now() < deadline:
            with contextlib.suppress(errors.KubeError):
                st = self.client.get(VMS, vm, self.namespace).get("status") or {}
                node = str(st.get("node") or "")
                if st.get("phase") == "Running" and node:
                    beat = heartbeat(self.lc, node, self._domain(vm))
                    if beat:
                        return node, beat
            time.sleep(0.3)
        raise TimeoutError(f"VM {self.namespace}/{vm} not Running with a heartbeat after {POOL_BOUND_S:.0f}s")

    # --- a round ----------------------------------------------------------------------------------

    def run(self, rounds: Iterable[int]) -> Summary:
        for n in rounds:
            res = self.run_round(n)
            self.results.append(res)
            self._print_round(res)  # before the repair: a repair that fails must not take the round's verdict
            if self.report is not None:
                self.report.write_text(json.dumps(self.summary().to_json(), indent=2))
            t0 = _now()
            self._clear_records()
            if res.violations:
                self._repair(res.violations)
            res.duration_s += _now() - t0
        return self.summary()

    def _clear_records(self) -> None:
        """What the node's admin does about a libvirt record of a copy that never ran, which libvirtd refuses
        to destroy (facts.never_started; the product reports it with a LeftoverRefused Warning on the VM, which
        the invariants require): stop libvirtd, remove the record's status file, start libvirtd."""
        stuck: dict[str, list[str]] = {}
        for node, dom in sorted(never_started_records(self.lc, node_domains(self.lc))):
            stuck.setdefault(node, []).append(dom)
        for node, doms in stuck.items():
            self.records_cleared += len(doms)
            self.log(f"  harness: clearing libvirt's record of {', '.join(doms)} on {node} (never started; "
                     "libvirtd refuses to destroy it): libvirtd restarted without its status file")
            self.lc.hosts.kill_daemon(int(node.removeprefix("node")))
            for d in doms:
                status_file(self.lc, node, d).unlink(missing_ok=True)
            deadline = _now() + 60
            while _now() < deadline and node_domains(self.lc).get(node) is None:
                time.sleep(0.5)

    def run_round(self, n: int) -> RoundResult:
        plan = plan_round(self.seed, n, vms=len(self.vms), memory_mib=MEMORY_MIB, skip=self.skip)
        res = RoundResult(plan)
        t0 = _now()
        source, beats, launcher = {}, {}, {}
        for vm in self.vms:
            source[vm], beats[vm] = self._wait_vm_beating(vm)
            launcher[vm] = str((self.client.get(VMS, vm, self.namespace).get("status") or {}).get("launcherPod"))
        names = {vm: f"r{n}-{vm}" for vm in self.vms}
        uids = {}
        for i, vm in enumerate(self.vms):
            spec: dict[str, Any] = {"selector": {"name": vm}}
            if plan.bandwidths[i]:
                spec["bandwidthMiBps"] = plan.bandwidths[i]
            m = self.client.create(MIGRATIONS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                                                "metadata": {"name": names[vm], "namespace": self.namespace},
                                                "spec": spec}, self.namespace)
            uids[vm] = m["metadata"]["uid"]
        rd = RoundState(plan, _now(), names, uids, source, launcher, beats, res)
        threads = [threading.Thread(target=self.harm.run, args=(rd,), name="harm", daemon=True)]
        if plan.cancel and plan.fault != Fault.CANCEL:
            threads.append(threading.Thread(target=self.harm.cancel_race, args=(rd,), name="cancel", daemon=True))
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) and _now() < rd.t0 + TRIGGER_TIMEOUT_S + self.recovery_bound_s:
            self._observe_migrations(rd)
            time.sleep(0.2)
        res.violations = self._converge(rd)
        if res.violations:
            try:
                res.evidence = str(self._keep_evidence(plan.round))
            except Exception as e:  # the verdict is printed whatever happens to its evidence (seed 21 round 100)
                self.log(f"  evidence of round {plan.round} not kept: {type(e).__name__}: {e}")
        self._delete_migrations(rd)
        res.duration_s = _now() - t0
        return res

    def _keep_evidence(self, n: int) -> Path:
        """Copy what explains a violation before the repair rebuilds it: the objects of the pool's namespace,
        the cluster's process logs, the node runner's pod directories, each host's libvirtd and domain logs."""
        state = Path(self.lc.state)
        out = state.parent / f"{state.name}-evidence" / f"seed{self.seed}-round{n}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for kinds in ("migrations,vms,pods", "events"):
            r = faults.kubectl(self.lc, "-n", self.namespace, "get", kinds, "-o", "yaml")
            (out / f"{kinds.replace(',', '-')}.yaml").write_text(r.stdout + r.stderr)
        for sub in ("logs", "pods"):
            with contextlib.suppress(OSError):
                shutil.copytree(state / sub, out / sub, ignore_dangling_symlinks=True, dirs_exist_ok=True)
        for h in self.lc.hosts.hosts:
            with contextlib.suppress(OSError):
                shutil.copy(h.root / "libvirtd.log", out / f"{h.name}-libvirtd.log")
            with contextlib.suppress(OSError):
                shutil.copytree(h.qemu_log_dir, out / f"{h.name}-qemu", dirs_exist_ok=True)
        self.log(f"  evidence of round {n}: {out}")
        return out

    def _observe_migrations(self, rd: RoundState) -> None:
        for m in self._list(MIGRATIONS):
            vm = next((v for v, name in rd.names.items() if name == m["metadata"]["name"]), None)
            st = m.get("status") or {}
            if vm is not None and m["metadata"].get("uid") == rd.uids[vm]:
                if st.get("targetNode"):
                    rd.targets[vm] = str(st["targetNode"])
                rd.last_phase[vm] = str(st.get("phase") or "")

    # --- after the harm ---------------------------------------------------------------------------

    def _expects(self, rd: RoundState) -> list[Expect]:
        out = []
        for vm in self.vms:
            victim = vm == self.vms[rd.plan.victim]
            touched = (victim and rd.plan.fault != Fault.NONE) or rd.plan.fault == Fault.NODE_RUNNER_KILL \
                or (rd.harmed_node != "" and rd.harmed_node in (rd.source[vm], rd.targets.get(vm, "")))
            out.append(Expect(vm=vm, domain=self._domain(vm), migration=rd.names[vm], migration_uid=rd.uids[vm],
                              source=rd.source[vm], target=rd.targets.get(vm, ""), cancelled=vm in rd.cancelled,
                              touched=touched, heartbeat_before=rd.beats[vm]))
        return out

    def _facts(self, rd: RoundState) -> tuple[list[Violation], dict[str, tuple[str, int | None]]]:
        snap = snapshot(self.lc, self.client, self.namespace)
        where: dict[str, tuple[str, int | None]] = {}
        for vm in self.vms:
            running = [n for n, d in snap.domains.items() if d and d.get(self._domain(vm)) == "running"]
            if len(running) == 1:
                where[vm] = (running[0], heartbeat(self.lc, running[0], self._domain(vm)))
        v = violations(snap, self._expects(rd), agent_pods=self.watch.agents_per_migration(),
                       heartbeats={vm: b for vm, (_, b) in where.items()})
        return v, where

    def _converge(self, rd: RoundState) -> list[Violation]:
        """Poll until every invariant holds (and heartbeats advance), or the bound ends; the violations left."""
        res = rd.result
        start = rd.t0 + (res.fault_at or 0.0)
        deadline = start + self.recovery_bound_s
        while True:
            self._observe_migrations(rd)
            v, where = self._facts(rd)
            clean_at = _now()
            if not v:
                time.sleep(HEARTBEAT_WINDOW_S)
                self._observe_migrations(rd)
                v, later = self._facts(rd)
                v += [Violation(Kind.HEARTBEAT_STALLED, vm, f"on {node}: {b} -> {later[vm][1]}")
                      for vm, (node, b) in where.items()
                      if vm in later and (later[vm][1] or 0) < (b or 0) + 1]
                if not v:
                    res.recovery_s = clean_at - start
                    break
            res.waited_on = sorted({str(x.kind) for x in v})  # what held the recovery up last
            if _now() > deadline:
                break
            time.sleep(POLL_S)
        for vm in self.vms:
            phase = rd.last_phase.get(vm, "")
            res.outcomes[vm] = ("cancelled: " if vm in rd.cancelled else "") + (phase or "gone") + \
                (f" ({rd.source[vm]}->{rd.targets.get(vm, '?')})")
        return [*rd.sticky, *v]

    def _delete_migrations(self, rd: RoundState) -> None:
        for vm, name in rd.names.items():
            if vm not in rd.cancelled:
                faults.kubectl(self.lc, "-n", self.namespace, "delete", "migration", name, "--wait=false",
                               "--ignore-not-found")
        deadline = _now() + DELETE_BOUND_S
        left = list(rd.names.values())
        while left and _now() < deadline:
            names = {m["metadata"]["name"] for m in self._list(MIGRATIONS)}
            left = [n for n in left if n in names]
            time.sleep(0.2)
        for name in left:
            if not any(v.kind == Kind.CANCEL_NOT_DONE for v in rd.result.violations):
                rd.result.violations.append(Violation(Kind.FINALIZER_STUCK, "", f"{name} still there "
                                                      f"{DELETE_BOUND_S:.0f}s after its delete"))
            self._force_delete_migration(name)

    def _force_delete_migration(self, name: str) -> None:
        with contextlib.suppress(errors.NotFound):
            self.client.patch(MIGRATIONS, name, {"metadata": {"finalizers": None}}, self.namespace)
        with contextlib.suppress(errors.NotFound):
            self.client.delete(MIGRATIONS, name, self.namespace)

    def _repair(self, found: list[Violation]) -> None:
        """Rebuild what the round broke, so the next round starts from a healthy cluster and pool."""
        self.repairs += 1
        self.lc.up(timeout=120)  # whatever process of the cluster is down (a libvirtd nobody restarted)
        # A libvirtd nobody restarted was restarted by the harness already: no VM to rebuild for that alone.
        cluster_wide = any(not v.vm and v.kind != Kind.LIBVIRTD_NOT_RESTARTED for v in found)
        broken = list(self.vms) if cluster_wide else sorted({v.vm for v in found if v.vm})
        for vm in broken:
            with contextlib.suppress(errors.NotFound):
                self.client.delete(VMS, vm, self.namespace)
        deadline = _now() + 60
        while _now() < deadline and any(v["metadata"]["name"] in broken for v in self._list(VMS)):
            time.sleep(0.3)
        for p in self._list(PODS):
            if (p["metadata"].get("labels") or {}).get("virtmigrate.kubevirt.io/vm") in broken:
                with contextlib.suppress(errors.NotFound):
                    self.client.delete(PODS, p["metadata"]["name"], self.namespace, grace_period_seconds=0)
        self._destroy_domains(broken)
        for vm in broken:
            self._create_vm(vm)
        for vm in broken:
            self._wait_vm_beating(vm)

    def _destroy_domains(self, vms: list[str]) -> None:
        for node, doms in node_domains(self.lc).items():
            for vm in vms:
                if doms and self._domain(vm) in doms:
                    self.lc.hosts.virsh(int(node.removeprefix("node")), "destroy", self._domain(vm), check=False)
                    self.lc.hosts.virsh(int(node.removeprefix("node")), "undefine", self._domain(vm), check=False)

    # --- reporting --------------------------------------------------------------------------------

    def _print_round(self, r: RoundResult) -> None:
        p = r.plan
        rec = f"recovered in {r.recovery_s:.1f}s" if r.recovery_s is not None else "NOT RECOVERED"
        if r.recovery_s is not None and r.waited_on:
            rec += f" (last waited on {', '.join(r.waited_on)})"
        self.log(f"round {p.round:>4} seed {p.seed}: {p.describe()} | {r.injected} | {r.timing()} | "
                 f"{'; '.join(f'{k}={v}' for k, v in r.outcomes.items())} | {rec} | {r.duration_s:.1f}s")
        for v in r.violations:
            self.log(f"  VIOLATION seed={p.seed} round={p.round} {v} | fault {p.fault} "
                     f"({p.describe()}; {r.injected}; {r.timing()}) | replay: {p.replay()}")

    def summary(self) -> Summary:
        return Summary(self.seed, list(self.results), self.repairs, _now() - self.started, self.recovery_bound_s,
                       records_cleared=self.records_cleared)


