"""End to end: `kubectl create` -> Succeeded on the local cluster vs `virsh migrate --live --p2p` of the same
256 MiB guest between the same two hosts, with a timeline of where the orchestration's time goes.

Each run alternates three migrations, each starting from where the previous one of its kind left the guest:
    ours        a Migration of VM `benchvm` through kubectl, the controller, the launchers and the agent;
    virsh-agent `virsh migrate --live --p2p --persistent --undefinesource` of an unmanaged guest booted from
                the same kernel, after `virsh migrate-setmaxdowntime` to the downtime the agent starts with
                (its policy's first step: like with like);
    virsh       the same with libvirt's default maximum downtime (QEMU's 300 ms).
Every arm starts after the same pause (SETTLE_S), and the arms' order rotates from run to run.
With --late-start a fourth arm, ours-late: the same Migration with the controller's agent early start off
(VIRTMIGRATE_AGENT_EARLY_START=false: the agent pod created at TargetReady, not once the target pod is bound);
the controller is restarted between the two settings, and the ratio ours / ours-late printed.
Figures: the median of each, the ratios ours / virsh-agent and ours / virsh (goal <= 1.15x), the
orchestration overhead (ours minus the agent's libvirt job time, goal median <= 0.25 s), the downtime of
each (agent result, `virsh domjobinfo --completed` on the destination), and the median of every segment of
the timeline (what the API showed, as a watch saw it, and the agent's own log).

With --nodes runner,kubelet the node modes are compared instead (ours only): per round, a fresh cluster of
each mode in turn (the order alternating between rounds), a warm-up migration, then --runs migrations;
the median of each mode, the ratio to the first (the default path may lose at most 20 %) and each mode's
timeline.

Usage: python bench/bench_e2e.py [--runs 7] [--late-start]
       python bench/bench_e2e.py --nodes runner,kubelet [--runs 5] [--rounds 2]
       (its own cluster in $VIRTMIGRATE_STATE, else a temporary one; nodes migrate on
       127.0.0.<$VIRTMIGRATE_E2E_FIRST_ADDRESS>+)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from virtmigrate import errors  # noqa: E402
from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN  # noqa: E402
from virtmigrate.kube.client import KubeClient  # noqa: E402
from virtmigrate.kube.resources import MIGRATIONS, NAMESPACES, PODS, VMS  # noqa: E402

BIN = Path(sys.executable).parent
JSON = dict[str, Any]
PHASES = ("Pending", "Scheduling", "Scheduled", "TargetReady", "Running", "Succeeded")
LABEL_MIGRATION = "virtmigrate.kubevirt.io/migration"
LABEL_ROLE = "virtmigrate.kubevirt.io/role"
# The timeline's milestones, in the order they happen; a segment is the time from one to the next.
MILESTONES = ("created", "target pod", "target bound", "target started", "target reports", "TargetReady", "agent pod",
              "agent started", "agent: migrate called", "agent: migrate returned", "agent: exited",
              "agent exit seen", "target runs guest", "Succeeded")


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Timeline:
    """Watches the namespace's pods and Migrations and notes, per Migration, when each milestone was first
    seen (wall time of the watch event, or the timestamp the controller or the agent wrote)."""

    def __init__(self, client: KubeClient, ns: str, pods_dir: Path) -> None:
        self.client, self.ns, self.pods_dir = client, ns, pods_dir
        self.seen: dict[str, dict[str, float]] = {}
        self.agent_logs: dict[str, str] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        for res in (PODS, MIGRATIONS):
            threading.Thread(target=self._watch, args=(res,), daemon=True).start()

    def note(self, migration: str, what: str, at: float | None = None) -> None:
        with self._lock:
            self.seen.setdefault(migration, {}).setdefault(what, time.time() if at is None else at)

    def _watch(self, res: Any) -> None:
        rv = self.client.list(res, self.ns, limit=1)["metadata"]["resourceVersion"]
        while not self.stop.is_set():
            try:
                for ev in self.client.watch(res, self.ns, resource_version=rv, timeout_seconds=60):
                    t = time.time()
                    rv = ev.object.get("metadata", {}).get("resourceVersion", rv)
                    if ev.type in ("ADDED", "MODIFIED"):
                        (self._pod if res is PODS else self._migration)(ev.object, t)
            except errors.KubeError:
                time.sleep(0.1)

    def _migration(self, m: JSON, t: float) -> None:
        name = m["metadata"]["name"]
        self.note(name, "created", t)
        for p in (m.get("status") or {}).get("phaseTransitionTimestamps") or []:
            if p["phase"] in ("TargetReady", "Succeeded"):
                self.note(name, p["phase"], _ts(p["time"]))

    def _pod(self, pod: JSON, t: float) -> None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        mig, role = labels.get(LABEL_MIGRATION), labels.get(LABEL_ROLE)
        if not mig:
            return
        facts = json.loads((meta.get("annotations") or {}).get(ANNOTATION_DOMAIN) or "{}")
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        state = statuses[0].get("state", {}) if statuses else {}
        if role == "agent":
            self.note(mig, "agent pod", t)
            if "running" in state or "terminated" in state:
                self.note(mig, "agent started", t)
            if "terminated" in state:
                self.note(mig, "agent exit seen", t)
                self._agent_log(mig, meta["uid"])
        elif role == "launcher":
            self.note(mig, "target pod", t)
            if (pod.get("spec") or {}).get("nodeName"):
                self.note(mig, "target bound", t)
            if "running" in state:
                self.note(mig, "target started", t)
            if facts.get("reachable"):
                self.note(mig, "target reports", t)
            if facts.get("state") == "running" and facts.get("job") == "none":
                self.note(mig, "target runs guest", t)

    def _agent_log_text(self, uid: str) -> str:
        """The agent's log: the node runner's file of the pod, else the kubelet's container log (CRI lines,
        `<time> <stream> <tag> <line>`, under <state>/kubelet/node*/pod-logs/<ns>_<pod>_<uid>/)."""
        with contextlib.suppress(OSError):
            return (self.pods_dir / uid / "agent.log").read_text()
        for f in sorted(self.pods_dir.parent.glob(f"kubelet/node*/pod-logs/*_{uid}/*/*.log")):
            with contextlib.suppress(OSError):
                return "\n".join(line.split(" ", 3)[-1] for line in f.read_text().splitlines())
        return ""

    def _agent_log(self, mig: str, uid: str) -> None:
        """The agent's JSON log lines, read while its pod (and so its log) still exists."""
        text = self._agent_log_text(uid)
        if text:
            self.agent_logs[mig] = text
            for line in text.splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    rec = json.loads(line)
                    if rec.get("event") != "migration_finished":
                        continue
                    self.note(mig, "agent: exited", _ts(rec["timestamp"]))
                    if rec.get("job_started") and rec.get("job_ended"):  # the agent's wall times of its call
                        self.note(mig, "agent: migrate called", _ts(rec["job_started"]))
                        self.note(mig, "agent: migrate returned", _ts(rec["job_ended"]))

    def segments(self, mig: str) -> dict[str, float]:
        got = self.seen.get(mig, {})
        marks = [(m, got[m]) for m in MILESTONES if m in got]
        return {f"{a} -> {b}": tb - ta for (a, ta), (b, tb) in itertools.pairwise(marks)}


def _virsh(uri: str, *args: str) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], check=True, capture_output=True, text=True,
                          timeout=300).stdout


def _virsh_downtime(uri: str, dom: str) -> float:
    out = _virsh(uri, "domjobinfo", "--completed", dom)
    m = re.search(r"Total downtime:\s+(\d+)", out)
    return float(m.group(1)) if m else float("nan")


def _wait(what: str, fn: Any, timeout: float = 180, interval: float = 0.02) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = fn()
        if out:
            return out
        time.sleep(interval)
    raise TimeoutError(what)


def agent_initial_downtime_ms(memory_bytes: int) -> int:
    """The maximum downtime the agent starts a migration with (its default policy's first step)."""
    from virtmigrate.agent.decisions import compute_downtime_steps, next_max_downtime
    from virtmigrate.agent.settings import Policy

    return next_max_downtime(0.0, compute_downtime_steps(Policy(), memory_bytes))


SETTLE_S = 3.0  # the pause before each arm


def job_s(m: JSON) -> float:
    """The agent's libvirt job, seconds, from a finished Migration's result (NaN without one)."""
    return float((m["status"].get("result") or {}).get("durationSeconds") or "nan")


def _med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def qemu_main_system_s(guest: str) -> float:
    """System CPU time, seconds, of the main thread of the QEMU that runs `guest` (a libvirt domain name) now.

    Right after a migration that is the target's: its main thread received the copy, and most of its system
    time is the first touch of the guest's RAM. On this machine (a Firecracker VM whose kernel reports free
    memory back to its host, page_reporting) that varies 0.07-0.8 s for the same 256 MiB and the same number
    of page faults, from one migration to the next, whoever migrates: printed per arm so that a ratio can be
    read with it. NaN when no such QEMU is found."""
    hz = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if f"guest={guest},".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
                return int(stat[stat.rfind(")") + 2:].split()[12]) / hz
    return float("nan")


def _set_early_start(lc: Any, early: bool) -> None:
    """Restart the cluster's controller with its agent early start on or off; return once it leads again."""
    from virtmigrate.local import procs
    from virtmigrate.local.cluster import CONTROLLER

    log = lc.state / "logs" / f"{CONTROLLER}.log"
    starts = log.read_text().count("migration_controller_starting") if log.exists() else 0
    procs.stop(f"{CONTROLLER}-supervisor", lc.state, grace=5)
    procs.stop(CONTROLLER, lc.state, grace=10)
    os.environ["VIRTMIGRATE_AGENT_EARLY_START"] = "true" if early else "false"
    lc.start_controller()
    _wait("the controller leading", lambda: log.read_text().count("migration_controller_starting") > starts, 60)
    time.sleep(1.0)  # its informers' first lists


OTHER = {"node0": "node1", "node1": "node0"}


def bench_vm(ns: str, kernel: Path) -> JSON:
    """VM `benchvm`: a 256 MiB guest kept on node0 or node1."""
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": "benchvm", "namespace": ns},
            "spec": {"running": True, "memory": "256Mi", "kernel": str(kernel),
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                         "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname",
                                                                      "operator": "In",
                                                                      "values": ["node0", "node1"]}]}]}}}}}


def wait_vm_running(client: KubeClient, ns: str) -> None:
    _wait("VM running", lambda: (client.get(VMS, "benchvm", ns).get("status") or {}).get("phase") == "Running", 180)


def migrate(client: KubeClient, kubectl: list[str], ns: str, name: str) -> tuple[float, float, JSON, str, str]:
    """One Migration of benchvm to the other node through kubectl: (seconds to Succeeded, wall time of
    the create, the Migration, source, destination), once its finalizer is released."""
    src = client.get(VMS, "benchvm", ns)["status"]["node"]
    doc = json.dumps({"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                      "metadata": {"name": name, "namespace": ns},
                      "spec": {"selector": {"name": "benchvm"},
                               "nodeSelector": {"kubernetes.io/hostname": OTHER[src]}}})
    t0, w0 = time.monotonic(), time.time()
    subprocess.run([*kubectl, "create", "-f", "-"], input=doc, text=True, check=True, capture_output=True)
    m = _wait("Succeeded", lambda: (lambda x: x if (x.get("status") or {}).get("phase") in
                                    ("Succeeded", "Failed") else None)(client.get(MIGRATIONS, name, ns)))
    took = time.monotonic() - t0
    if m["status"]["phase"] != "Succeeded":
        raise RuntimeError(f"migration failed: {m['status']}")
    _wait("finalizer released", lambda: not (client.get(MIGRATIONS, name, ns)["metadata"].get("finalizers")))
    return took, w0, m, src, OTHER[src]


# Who spends the critical path's time: (who, from milestone, to milestone); a run's share of each is the sum of its
# spans (a span whose milestones were not both seen is left out of that run). An agent created early (its pod
# before TargetReady, the default) starts alongside the target launcher and then waits for TargetReady: its own
# part of the path is TargetReady -> its migrate call; EARLY replaces those spans for such a run.
BUDGET = (
    ("kubectl (the user's command)", (("kubectl create", "created"),)),
    ("controller (decisions, writes)", (("created", "target pod"), ("target reports", "agent pod"),
                                        ("agent: exited", "Succeeded"))),
    ("node (bind, start the pods)", (("target pod", "target started"), ("agent pod", "agent started"))),
    ("target launcher start -> first report", (("target started", "target reports"),)),
    ("agent start -> migrate call", (("agent started", "agent: migrate called"),)),
    # libvirt's call, split where the target's launcher reported the guest running there (a report lags the
    # switch-over by its own round trip): the copy, then the source's confirm step — on libvirt 9 its stop of
    # the source QEMU waits 200 ms after SIGTERM before it looks again, in virsh's arms too.
    ("libvirt: copy until the target runs it", (("agent: migrate called", "target runs guest"),)),
    ("libvirt: confirm after that", (("target runs guest", "agent: migrate returned"),)),
    ("agent's exit", (("agent: migrate returned", "agent: exited"),)),
)
EARLY = {
    "controller (decisions, writes)": (("created", "target pod"), ("target reports", "TargetReady"),
                                       ("agent: exited", "Succeeded")),
    "node (bind, start the pods)": (("target pod", "target started"),),
    "agent start -> migrate call": (("TargetReady", "agent: migrate called"),),
}


def budget(seen: dict[str, float]) -> dict[str, float]:
    """One run's time per BUDGET row, seconds."""
    early = seen.get("agent pod", float("inf")) < seen.get("TargetReady", float("-inf"))
    rows = ((who, EARLY.get(who, spans) if early else spans) for who, spans in BUDGET)
    return {who: sum(seen[b] - seen[a] for a, b in spans if a in seen and b in seen) for who, spans in rows}


def print_budget(runs: list[dict[str, float]], total: float, indent: str = "    ") -> None:
    """The median of each row, its share of the median end to end, and what the rows other than libvirt's call
    add up to (the orchestration's own time on the critical path)."""
    meds = {who: _med([r[who] for r in runs]) for who, _ in BUDGET}
    for who, m in meds.items():
        print(f"{indent}{who:40} {m:6.3f}s  {100 * m / total:4.0f} %")
    own = sum(m for who, m in meds.items() if not who.startswith("libvirt"))
    print(f"{indent}{'all but libvirt (sum of medians)':40} {own:6.3f}s  {100 * own / total:4.0f} %")


def print_marks(timeline: Timeline, name: str, w0: float) -> None:
    """One Migration's milestones, in the order they were seen, as seconds after its `kubectl create`."""
    marks = sorted(timeline.seen.get(name, {}).items(), key=lambda kv: kv[1])
    print(f"  at (s after kubectl create, {w0:.3f}): " + ", ".join(f"{k} {v - w0:+.3f}" for k, v in marks),
          flush=True)


def print_timeline(segs: dict[str, list[float]], indent: str = "    ") -> None:
    order = ["kubectl create -> created"] + [f"{a} -> {b}" for a, b in itertools.combinations(MILESTONES, 2)]
    for k in sorted(segs, key=lambda s: order.index(s) if s in order else len(order)):
        print(f"{indent}{k:45} {_med(segs[k]):6.3f}  (n={len(segs[k])})")


def e2e(runs: int, late_start: bool = False) -> None:
    from virtmigrate.launcher.domainxml import GuestConfig, domain_xml
    from virtmigrate.local.cluster import LocalCluster
    from virtmigrate.local.guest import guest_kernel

    state_env = os.environ.get("VIRTMIGRATE_STATE")
    own = state_env is None
    state = Path(state_env) if state_env else Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    first = int(os.environ.get("VIRTMIGRATE_E2E_FIRST_ADDRESS", "50"))  # apart from other clusters on this host
    lc = LocalCluster(state, nodes=3, first_address=first)
    lc.up()
    kubectl = [str(BIN / "kubectl"), f"--kubeconfig={lc.kubeconfig}"]
    client = lc.client()
    ns = f"bench-e2e-{int(time.time())}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    timeline = Timeline(client, ns, state / "pods")
    kernel = guest_kernel()
    memory = 256 << 20
    client.create(VMS, bench_vm(ns, kernel), ns)
    wait_vm_running(client, ns)
    hosts = {f"node{i}": lc.hosts.host(i) for i in range(2)}
    other = OTHER
    downtime = agent_initial_downtime_ms(memory)
    guests = {"virsh-agent": "bench-baseline-a", "virsh": "bench-baseline-d"}
    at = {"virsh-agent": "node0", "virsh": "node0"}
    tmp = Path(tempfile.mkdtemp())
    for i, (kind, dom) in enumerate(guests.items()):
        cfg = GuestConfig(name=dom, uuid=f"8c9b0d0e-0000-4000-8000-00000000b0b{i}", memory_bytes=memory,
                          kernel=str(kernel))
        (tmp / f"{dom}.xml").write_text(domain_xml(cfg))
        _virsh(hosts[at[kind]].uri, "create", str(tmp / f"{dom}.xml"))
    time.sleep(3)  # the guests fill their RAM at boot: migrate guests whose memory holds data
    took: dict[str, list[float]] = {"ours": [], "virsh-agent": [], "virsh": []}
    down: dict[str, list[float]] = {k: [] for k in took}
    qemu_sys: dict[str, list[float]] = {k: [] for k in took}
    job: list[float] = []
    steps: dict[str, list[float]] = {}
    segs: dict[str, list[float]] = {}
    print(f"e2e: {runs} runs of each; the agent starts with a maximum downtime of {downtime} ms "
          "(virsh-agent is set to it; virsh keeps libvirt's default); each arm after a pause of "
          f"{SETTLE_S:.0f} s, the arms' order rotating from run to run", flush=True)
    late: dict[str, list[float]] = {"ours-late": [], "job": []}

    def ours(run: int) -> str:
        name = f"bench-{run}"
        took_ours, w0, m, src, dst = migrate(client, kubectl, ns, name)
        took["ours"].append(took_ours)
        qemu_sys["ours"].append(qemu_main_system_s(f"{ns}_benchvm"))
        stamps = {p["phase"]: p["time"] for p in m["status"]["phaseTransitionTimestamps"]}
        for a_, b_ in itertools.pairwise(PHASES):
            if a_ in stamps and b_ in stamps:
                steps.setdefault(f"{a_}->{b_}", []).append(_ts(stamps[b_]) - _ts(stamps[a_]))
        result = m["status"].get("result") or {}
        job.append(job_s(m))
        downtime_ms = result.get("downtimeMs")
        down["ours"].append(float(downtime_ms) if downtime_ms is not None else float("nan"))
        timeline.note(name, "kubectl create", w0)
        for k, v in timeline.segments(name).items():
            segs.setdefault(k, []).append(v)
        created = timeline.seen.get(name, {}).get("created")
        if created is not None:
            segs.setdefault("kubectl create -> created", []).append(created - w0)
        return (f"ours {took['ours'][-1]:.2f}s ({src}->{dst}, job {job[-1]:.2f}s, downtime "
                f"{down['ours'][-1]:.0f} ms, target QEMU system {qemu_sys['ours'][-1]:.2f}s)")

    def virsh(kind: str) -> str:
        a, b = at[kind], other[at[kind]]
        if kind == "virsh-agent":
            _virsh(hosts[a].uri, "migrate-setmaxdowntime", guests[kind], str(downtime))
        t0 = time.monotonic()
        _virsh(hosts[a].uri, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", guests[kind],
               hosts[b].uri, "--migrateuri", hosts[b].migration_uri)
        took[kind].append(time.monotonic() - t0)
        qemu_sys[kind].append(qemu_main_system_s(guests[kind]))
        down[kind].append(_virsh_downtime(hosts[b].uri, guests[kind]))
        at[kind] = b
        return (f"{kind} {took[kind][-1]:.2f}s (downtime {down[kind][-1]:.0f} ms, target QEMU system "
                f"{qemu_sys[kind][-1]:.2f}s)")

    def ours_late(run: int) -> None:
        """The agent created at TargetReady (VIRTMIGRATE_AGENT_EARLY_START=false), the controller restarted for it
        and again after it."""
        _set_early_start(lc, False)
        time.sleep(SETTLE_S)
        took_late, w0_late, m, _, _ = migrate(client, kubectl, ns, f"bench-late-{run}")
        late["ours-late"].append(took_late)
        late["job"].append(job_s(m))
        print(f"run {run}: ours-late {late['ours-late'][-1]:.2f}s (job {late['job'][-1]:.2f}s)", flush=True)
        print_marks(timeline, f"bench-late-{run}", w0_late)
        _set_early_start(lc, True)

    arms = ("ours", "virsh-agent", "virsh")
    try:
        for run in range(runs):
            # ours-late before the arms in even runs and after them in odd ones: each run migrates benchvm twice,
            # and a fixed order would have every ours run go the same way between the same two hosts.
            if late_start and run % 2 == 0:
                ours_late(run)
            line = []
            for arm in arms[run % 3:] + arms[:run % 3]:
                # The same pause before every arm, in an order that rotates: the target QEMU's first touch of
                # its RAM costs this machine 0.07-0.8 s of system time (see qemu_main_system_s), and an arm
                # should not win by always following the same other arm.
                time.sleep(SETTLE_S)
                line.append(ours(run) if arm == "ours" else virsh(arm))
            print(f"run {run}: " + "; ".join(sorted(line)), flush=True)
            print_marks(timeline, f"bench-{run}", timeline.seen[f"bench-{run}"]["kubectl create"])
            if late_start and run % 2 == 1:
                ours_late(run)
        med = {k: _med(v) for k, v in took.items()}
        print(f"e2e: median kubectl create -> Succeeded {med['ours']:.2f}s; virsh migrate at the agent's "
              f"{downtime} ms {med['virsh-agent']:.2f}s, at libvirt's default {med['virsh']:.2f}s")
        print(f"  ratio ours / virsh-agent {med['ours'] / med['virsh-agent']:.2f}x, ours / virsh "
              f"{med['ours'] / med['virsh']:.2f}x (goal <= 1.15x)")
        print(f"  median downtime: ours {_med(down['ours']):.0f} ms, virsh-agent {_med(down['virsh-agent']):.0f} ms, "
              f"virsh {_med(down['virsh']):.0f} ms; the downtime policy costs "
              f"{med['virsh-agent'] - med['virsh']:+.2f}s of virsh's wall time")
        print("  median system time of the target QEMU's main thread (it receives the copy; the first touch of "
              "its RAM): " + ", ".join(f"{k} {_med(v):.2f}s" for k, v in qemu_sys.items()))
        overhead = [o - j for o, j in zip(took["ours"], job, strict=True)]
        print(f"  orchestration overhead (end to end minus the agent's libvirt job): median {_med(overhead):.2f}s "
              f"(goal <= 0.25 s); libvirt job median {_med(job):.2f}s vs virsh-agent {med['virsh-agent']:.2f}s")
        if late_start:
            over_late = [o - j for o, j in zip(late["ours-late"], late["job"], strict=True)]
            print(f"  agent created at TargetReady (ours-late): median {_med(late['ours-late']):.2f}s, ours / "
                  f"ours-late {med['ours'] / _med(late['ours-late']):.2f}x, overhead {_med(over_late):.2f}s "
                  f"(ours {_med(overhead):.2f}s)")
        print("  median time between phases: " + ", ".join(f"{k} {_med(v):.3f}s" for k, v in steps.items()))
        print("  where the time goes (median per run, share of the median end to end):")
        print_budget([budget(timeline.seen.get(f"bench-{r}", {})) for r in range(runs)], med["ours"])
        print("  timeline (median per segment, seconds):")
        print_timeline(segs)
    finally:
        timeline.stop.set()
        for kind, dom in guests.items():
            with contextlib.suppress(subprocess.CalledProcessError):
                _virsh(hosts[at[kind]].uri, "destroy", dom)
            with contextlib.suppress(subprocess.CalledProcessError):
                _virsh(hosts[at[kind]].uri, "undefine", dom)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([*kubectl, "delete", "namespace", ns, "--wait=false"], capture_output=True)
        if own:
            lc.down()
            shutil.rmtree(state, ignore_errors=True)


def nodes_ab(modes: list[str], runs: int, rounds: int) -> None:
    """`kubectl create` -> Succeeded of benchvm on clusters of each node mode ("runner", "kubelet") in turn,
    in one invocation: each round brings up a fresh cluster per mode in the same state directory, migrates
    once to warm it (not counted), then `runs` times, and takes it down. Prints each mode's median, the
    ratios to the first mode, and each mode's timeline."""
    from virtmigrate.local.cluster import LocalCluster
    from virtmigrate.local.guest import guest_kernel

    state_env = os.environ.get("VIRTMIGRATE_STATE")
    state = Path(state_env) if state_env else Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    first = int(os.environ.get("VIRTMIGRATE_E2E_FIRST_ADDRESS", "50"))
    took: dict[str, list[float]] = {m: [] for m in modes}
    per_round: dict[str, list[float]] = {m: [] for m in modes}
    segs: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    saved_mode = os.environ.get("VIRTMIGRATE_NODES")
    try:
        for rnd in range(rounds):
            for mode in (modes if rnd % 2 == 0 else modes[::-1]):
                os.environ["VIRTMIGRATE_NODES"] = mode
                lc = LocalCluster(state, nodes=3, first_address=first)
                if lc.node_mode != mode:
                    lc.down()  # a cluster of the other mode was left in the state directory
                    lc = LocalCluster(state, nodes=3, first_address=first)
                try:
                    lc.up()
                    client = lc.client()
                    kubectl = [str(BIN / "kubectl"), f"--kubeconfig={lc.kubeconfig}"]
                    ns = f"bench-nodes-{int(time.time())}"
                    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                    timeline = Timeline(client, ns, lc.state / "pods")
                    client.create(VMS, bench_vm(ns, guest_kernel()), ns)
                    wait_vm_running(client, ns)
                    time.sleep(3)  # the guest fills its RAM at boot
                    migrate(client, kubectl, ns, "bench-warm")
                    mine = []
                    for run in range(runs):
                        name = f"bench-{run}"
                        t, w0, _, src, dst = migrate(client, kubectl, ns, name)
                        mine.append(t)
                        timeline.note(name, "kubectl create", w0)
                        for k, v in timeline.segments(name).items():
                            segs[mode].setdefault(k, []).append(v)
                        print(f"round {rnd} {mode}: run {run} {t:.2f}s ({src}->{dst})", flush=True)
                    timeline.stop.set()
                    took[mode] += mine
                    per_round[mode].append(_med(mine))
                finally:
                    lc.down()
        med = {m: _med(v) for m, v in took.items()}
        print(f"e2e by node mode: median kubectl create -> Succeeded over {rounds} round(s) of {runs}: "
              + ", ".join(f"{m} {med[m]:.2f}s" for m in modes))
        print("  per round: " + "; ".join(f"{m} " + " ".join(f"{x:.2f}" for x in per_round[m]) for m in modes))
        for m in modes[1:]:
            print(f"  ratio {m} / {modes[0]} {med[m] / med[modes[0]]:.2f}x (goal <= 1.20x), "
                  f"difference {med[m] - med[modes[0]]:+.2f}s")
        for m in modes:
            print(f"  timeline on {m} nodes (median per segment, seconds):")
            print_timeline(segs[m])
    finally:
        if saved_mode is None:
            os.environ.pop("VIRTMIGRATE_NODES", None)
        else:
            os.environ["VIRTMIGRATE_NODES"] = saved_mode
        if not state_env:
            shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--late-start", action="store_true",
                    help="also migrate with the controller's agent early start off (arm ours-late)")
    ap.add_argument("--nodes", default=None, metavar="MODES",
                    help="compare node modes instead, e.g. runner,kubelet: a fresh cluster per mode and round, "
                         "ours only (with --rounds)")
    ap.add_argument("--rounds", type=int, default=1, help="with --nodes: rounds, alternating the modes' order")
    args = ap.parse_args()
    if args.nodes:
        nodes_ab(args.nodes.split(","), args.runs, args.rounds)
        return 0
    e2e(args.runs, late_start=args.late_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
