"""Benchmarks of the migration controller, printed as figures and ratios from one invocation.

    scale   N concurrent Migrations (200 and 1,000) on a real API server + kube-scheduler, with a harness
            standing in for the kubelet: it makes target launcher pods Ready and completes agent pods
            (exit 0, a JSON result) as soon as they are bound, and finishes pod deletions. Each size runs
            with empty caches and with 10,000 finished Migrations pre-loaded (history), each scenario in
            a namespace of its own that is emptied afterwards. The controller runs as its own process,
            so its CPU time and peak RSS are its own; measuring starts once it is idle after its initial
            list. Figures: controller CPU per migration (goal <= 8 ms at 1,000), p50/p99 create ->
            Succeeded, peak RSS, and the history ratio (pre-loaded / empty, goal <= 1.1x). With
            `--baseline DIR` (a source tree, e.g. `git archive main | tar -x -C DIR`) that tree's
            controller runs every scenario too, interleaved, and new / baseline ratios are printed; `--new DIR`
            runs another tree as the new side.
    e2e     bench/bench_e2e.py: `kubectl create` -> Succeeded vs `virsh migrate --live --p2p` of the same
            guest (at the agent's starting downtime and at libvirt's default), with a timeline.

Usage: python bench/bench_controller.py scale [--n 200,1000] [--preload 10000] [--baseline DIR] [--new DIR]
                                                          [--rounds K]
                                                          (own control plane, or $VIRTMIGRATE_BENCH_KUBECONFIG)
       python bench/bench_controller.py e2e [--runs 5]    (own local cluster, or the one at $VIRTMIGRATE_STATE)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from virtmigrate import errors  # noqa: E402
from virtmigrate.api.constants import LABEL_MIGRATION  # noqa: E402
from virtmigrate.api.domainfacts import (  # noqa: E402
    ANNOTATION_DOMAIN,
    DomainFacts,
    DomainState,
    LauncherMode,
)
from virtmigrate.kube.client import KubeClient  # noqa: E402
from virtmigrate.kube.resources import MIGRATIONS, NAMESPACES, NODES, PODS, VMS  # noqa: E402

BIN = Path(sys.executable).parent
JSON = dict[str, Any]
# What launchers report of their node's libvirt (virtmigrate.api.domainfacts), as their pods' annotation:
RUNS = DomainFacts(reachable=True, present=True, state=DomainState.RUNNING, persistent=True,
                   mode=LauncherMode.HOLD).to_annotation()        # the guest runs here
WAITS = DomainFacts(reachable=True, mode=LauncherMode.WAITING).to_annotation()  # ready to receive it
GONE = DomainFacts(reachable=True, mode=LauncherMode.EXITING).to_annotation()   # it left this node
AGENT_RESULT = json.dumps({"outcome": "succeeded", "exitCode": 0, "reason": "Migrated", "message": "",
                           "durationSeconds": 0.5, "downtimeMs": 20, "dataTotal": 67108864,
                           "dataProcessed": 67108864, "iterations": 2, "mode": "pre-copy", "actions": []})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- fake cluster objects ----------------------------------------------------------------------------

def make_nodes(client: KubeClient, n: int) -> list[str]:
    names = []
    for i in range(n):
        name = f"bench-node{i}"
        names.append(name)
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "bench": "yes"},
                             "annotations": {"virtmigrate.kubevirt.io/libvirt-uri":
                                             f"qemu+tcp://127.0.0.1:{17000 + i}/system"}}}
        with contextlib.suppress(errors.AlreadyExists):
            client.create(NODES, node)
        status = {"status": {"capacity": {"memory": "1Ti", "cpu": "1000", "pods": "5000"},
                             "allocatable": {"memory": "1Ti", "cpu": "1000", "pods": "5000"},
                             "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                             "message": "bench", "lastHeartbeatTime": now_rfc3339(),
                                             "lastTransitionTime": now_rfc3339()}],
                             "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}
        client.patch(NODES, name, status, subresource="status")
        client.patch(NODES, name, {"spec": {"taints": None}})  # the apiserver's not-ready taint at creation
    return names


def make_vm(client: KubeClient, ns: str, i: int, node: str) -> None:
    name = f"vm{i}"
    launcher = f"virt-launcher-{name}-src00"
    vm = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name, "namespace": ns},
          "spec": {"running": True, "memory": "64Mi", "kernel": "/var/lib/virtmigrate/images/bench"}}
    client.create(VMS, vm, ns)
    client.patch(VMS, name, {"status": {"phase": "Running", "node": node, "launcherPod": launcher}}, ns,
                 subresource="status")
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": launcher, "namespace": ns, "annotations": {ANNOTATION_DOMAIN: RUNS},
                        "labels": {"virtmigrate.kubevirt.io/vm": name, "virtmigrate.kubevirt.io/role": "launcher"}},
           "spec": {"nodeName": node, "containers": [{"name": "launcher", "image": "none"}]}}
    client.create(PODS, pod, ns)
    client.patch(PODS, launcher, {"status": _running_status()}, ns, subresource="status")


def _running_status() -> JSON:
    t = now_rfc3339()
    return {"phase": "Running", "startTime": t,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}],
            "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "none", "imageID": "",
                                   "state": {"running": {"startedAt": t}}}]}


def _done_status(code: int, message: str) -> JSON:
    t = now_rfc3339()
    return {"phase": "Succeeded" if code == 0 else "Failed", "startTime": t,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": t}],
            "containerStatuses": [{"name": "c", "ready": False, "restartCount": 0, "image": "none", "imageID": "",
                                   "state": {"terminated": {"exitCode": code, "message": message,
                                                            "startedAt": t, "finishedAt": t}}}]}


class HarnessKubelet:
    """Stands in for the kubelet and the launchers of every bench node: acts on pods as soon as they are
    bound. A target launcher becomes Ready and reports it waits for the guest; an agent "migrates" once its
    Migration says TargetReady or Running (as the real agent waits: virtmigrate/agent/gate.py): the
    target's report says the guest runs there, the source's that it left, then the agent exits 0."""

    def __init__(self, client: KubeClient, ns: str) -> None:
        self.client = client
        self.ns = ns
        self.pool = cf.ThreadPoolExecutor(8)
        self.done: set[str] = set()
        self.targets: dict[str, str] = {}  # vm -> its target launcher pod (seen bound)
        self.lock = threading.Lock()
        self.ready: set[str] = set()                      # Migrations seen TargetReady or later
        self.waiting: dict[str, tuple[str, str]] = {}     # Migration -> (its agent pod, vm), bound, not ready
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(PODS, self._act), daemon=True),
                        threading.Thread(target=self._run, args=(MIGRATIONS, self._gate), daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, res: Any, act: Any) -> None:
        rv = self.client.list(res, self.ns, limit=1)["metadata"]["resourceVersion"]
        while not self.stop.is_set():
            try:
                for ev in self.client.watch(res, self.ns, resource_version=rv, timeout_seconds=60):
                    if self.stop.is_set():
                        return
                    rv = ev.object.get("metadata", {}).get("resourceVersion", rv)
                    if ev.type in ("ADDED", "MODIFIED"):
                        act(ev.object)
            except errors.KubeError:
                time.sleep(0.2)

    def _gate(self, mig: JSON) -> None:
        if (mig.get("status") or {}).get("phase") not in ("TargetReady", "Running", "Succeeded", "Failed"):
            return
        name = mig["metadata"]["name"]
        with self.lock:
            self.ready.add(name)
            agent = self.waiting.pop(name, None)
        if agent is not None:
            self.pool.submit(self._migrate, *agent)

    def _act(self, pod: JSON) -> None:
        meta = pod["metadata"]
        name = meta["name"]
        labels = meta.get("labels") or {}
        role, vm = labels.get("virtmigrate.kubevirt.io/role"), labels.get("virtmigrate.kubevirt.io/vm", "")
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if meta.get("deletionTimestamp"):
            if ("del", name) not in self.done:
                self.done.add(("del", name))  # type: ignore[arg-type]
                self.pool.submit(self._quiet, self.client.delete, PODS, name, self.ns, grace_period_seconds=0)
            return
        if not node or phase not in (None, "Pending") or name in self.done:
            return
        self.done.add(name)
        if role == "agent":
            mig = labels.get(LABEL_MIGRATION, "")
            with self.lock:
                go = mig in self.ready
                if not go:
                    self.waiting[mig] = (name, vm)
            if go:
                self.pool.submit(self._migrate, name, vm)
        else:
            self.targets[vm] = name
            self.pool.submit(self._quiet, self._target_ready, name)

    def _target_ready(self, name: str) -> None:
        self.client.patch(PODS, name, {"status": _running_status()}, self.ns, subresource="status")
        self.client.patch(PODS, name, {"metadata": {"annotations": {ANNOTATION_DOMAIN: WAITS}}}, self.ns)

    def _migrate(self, agent: str, vm: str) -> None:
        with contextlib.suppress(errors.KubeError):
            target = self.targets.get(vm)
            if target:
                self.client.patch(PODS, target, {"metadata": {"annotations": {ANNOTATION_DOMAIN: RUNS}}}, self.ns)
            self.client.patch(PODS, f"virt-launcher-{vm}-src00", {"metadata": {"annotations": {
                ANNOTATION_DOMAIN: GONE}}}, self.ns)
            self.client.patch(PODS, agent, {"status": _done_status(0, AGENT_RESULT)}, self.ns, subresource="status")

    @staticmethod
    def _quiet(fn: Any, *args: Any, **kw: Any) -> None:
        with contextlib.suppress(errors.KubeError):
            fn(*args, **kw)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def histogram_quantile(text: str, name: str, q: float) -> float:
    """Prometheus' histogram_quantile over one histogram's cumulative buckets (linear in the bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return prev_le


def counter_sum(text: str, name: str, label: str) -> float:
    """The sum of counter `name`'s series whose labels contain `label` (exposition text)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def api_request_counts(client: KubeClient) -> dict[str, float]:
    """The API server's request counters (verb resource/subresource code) for our kinds of objects."""
    out: dict[str, float] = {}
    with contextlib.suppress(errors.KubeError):
        text = str(client.request("GET", "/metrics"))
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.rindex("}")].split(","))
            res = labels.get("resource", '""').strip('"')
            if res not in ("pods", "migrations", "vms", "events", "serviceaccounts"):
                continue
            sub = labels.get("subresource", '""').strip('"')
            key = f"{labels['verb'].strip(chr(34))} {res}{'/' + sub if sub else ''} {labels['code'].strip(chr(34))}"
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def proc_cpu_s(pid: int) -> float:
    return sum(proc_cpu_split_s(pid))


def proc_cpu_split_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_controller(kubeconfig: str, port: int, *extra: str, argv: list[str] | None = None,
                     env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(Path(tempfile.gettempdir()) / f"bench-controller-{port}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([*(argv or [str(BIN / "virtmigrate-controller")]), f"--kubeconfig={kubeconfig}",
                             "--leader-elect=false", "--vm-controller=false", f"--metrics-address=127.0.0.1:{port}",
                             "--log-level=warning", *extra], stdout=log, stderr=log, env=env,
                            cwd="/")  # `python -m` puts the working directory first on sys.path: not this tree


def wait_ready(port: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz",
                                                                  timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("controller not ready")


@dataclass
class Figures:
    """One scenario's outcome: `n` concurrent Migrations with `preload` finished ones already cached."""

    code: str
    n: int
    preload: int
    cpu_ms: float = float("nan")        # controller CPU per migration
    sys_ms: float = float("nan")        # of which in the kernel (system time: syscalls, thread switches)
    p50_s: float = float("nan")         # create -> Succeeded
    p99_s: float = float("nan")
    rss_mib: float = float("nan")       # controller peak RSS (VmHWM)
    e2a_p99_ms: float = float("nan")    # event-to-action p99, from the controller's /metrics
    syncs: float = float("nan")         # migration syncs per migration (every outcome), from /metrics
    wall_s: float = float("nan")
    ok: int = 0
    failed: int = 0
    round: int = 0                      # which repetition (--rounds)


NEW_TREE: str | None = None  # `--new DIR`: the "new" side runs that source tree instead of this one


def controller_argv(code: str) -> tuple[list[str], dict[str, str]]:
    """How to start the controller of `code`: "new" is this tree's entry point; any other value is the
    path of a source tree (e.g. `git archive main | tar -x -C DIR`) run with the same interpreter."""
    if code == "new":
        if NEW_TREE is None:
            return [str(BIN / "virtmigrate-controller")], dict(os.environ)
        code = NEW_TREE
    return [sys.executable, "-m", "virtmigrate.cmd.controller"], {**os.environ, "PYTHONPATH": code}


def history_flags(code: str) -> list[str]:
    """Like with like: every controller keeps every finished Migration, so the history row measures a
    cache of `--preload` finished objects on both sides. A tree from before `--migration-history-limit`
    (commit d53c68c) prunes nothing and would refuse the flag: it gets none and keeps all the same."""
    if code != "new":
        config = Path(code) / "virtmigrate" / "controller" / "config.py"
        if not (config.is_file() and "--migration-history-limit" in config.read_text()):
            return []
    return ["--migration-history-limit=-1"]


def history_config(baseline: str | None) -> str:
    """One line saying what each side does with finished Migrations, printed before any figure."""
    if baseline is None or history_flags(baseline):
        return "history: every side keeps every finished Migration (--migration-history-limit=-1)"
    return (f"history: the baseline {baseline} predates --migration-history-limit and prunes nothing; "
            "the new side keeps all (-1): both keep every finished Migration")


def preload_history(client: KubeClient, ns: str, count: int, vms: int) -> None:
    """`count` finished Migrations (Succeeded, no finalizer) of VMs vm0..vm<vms-1>, as a cluster that has
    drained its nodes many times holds them."""
    def one(i: int) -> None:
        name = f"done{i}"
        client.create(MIGRATIONS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                                   "metadata": {"name": name, "namespace": ns, "labels": {"bench": "history"}},
                                   "spec": {"selector": {"name": f"vm{i % vms}"}}}, ns)
        t = now_rfc3339()
        client.patch(MIGRATIONS, name, {"status": {"phase": "Succeeded", "reason": "Migrated", "sourceNode":
                                                   f"bench-node{i % 10}", "phaseTransitionTimestamps": [
            {"phase": "Pending", "time": t}, {"phase": "Succeeded", "time": t}]}}, ns, subresource="status")
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def wait_idle(pid: int, limit_s: float = 240.0) -> None:
    """Until the controller's CPU use falls quiet (its initial list synced and every key handled)."""
    end, last = time.monotonic() + limit_s, proc_cpu_s(pid)
    while time.monotonic() < end:
        time.sleep(1.0)
        cur = proc_cpu_s(pid)
        if cur - last < 0.03:
            return
        last = cur


def _cleanup(client: KubeClient, ns: str) -> None:
    """Empty the namespace (namespaces stay Terminating without a controller-manager): the next scenario's
    controller must not find this one's objects, even a controller that caches every namespace."""
    for res, body in ((MIGRATIONS, None), (VMS, None),
                      (PODS, {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})):
        with contextlib.suppress(errors.KubeError):
            client.request("DELETE", res.path(ns), body=body, timeout=300)
    with contextlib.suppress(errors.KubeError):  # Failed ones may keep the finalizer: release it
        for m in client.list_all(MIGRATIONS, ns):
            client.patch(MIGRATIONS, m["metadata"]["name"], {"metadata": {"finalizers": None}}, ns)


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def run_scenario(client: KubeClient, kubeconfig: str, nodes: list[str], *, code: str, n: int, preload: int,
                 workers: int) -> Figures:
    fig = Figures("new" if code == "new" else "baseline", n, preload)
    ns = f"bench-{fig.code}-{n}-{preload}-{int(time.time())}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    t = time.monotonic()
    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: make_vm(client, ns, i, nodes[i % len(nodes)]), range(n)))
    if preload:
        preload_history(client, ns, preload, n)
    print(f"  [{fig.code} n={n} history={preload}] setup: {n} running VMs, {preload} finished Migrations in "
          f"{time.monotonic() - t:.0f}s", flush=True)
    kubelet = HarnessKubelet(client, ns)
    kubelet.start()
    port = free_port()
    argv, env = controller_argv(code)
    extra = history_flags(code)  # the same history configuration on every side
    proc = start_controller(kubeconfig, port, f"--namespaces={ns}", f"--max-parallel-migrations={n}",
                            f"--max-outbound-per-node={n}", f"--workers={workers}", *extra, argv=argv, env=env)
    try:
        wait_ready(port, timeout=240)
        wait_idle(proc.pid)
        spy = None
        if os.environ.get("VIRTMIGRATE_BENCH_PYSPY"):  # a flame profile of the controller while it works
            spy = subprocess.Popen([str(BIN / "py-spy"), "record", "-p", str(proc.pid), "-f", "raw", "-o",
                                    f"{os.environ['VIRTMIGRATE_BENCH_PYSPY']}.{fig.code}-{n}-{preload}",
                                    "--nonblocking", *os.environ.get("VIRTMIGRATE_BENCH_PYSPY_ARGS", "").split()],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        syncs0 = counter_sum(_metrics(port), "virtmigrate_controller_syncs_total", 'controller="migration"')
        cpu0, sys0 = proc_cpu_s(proc.pid), proc_cpu_split_s(proc.pid)[1]
        created_at: dict[str, float] = {}
        t0 = time.monotonic()

        def create(i: int) -> None:
            created_at[f"m{i}"] = time.time()
            client.create(MIGRATIONS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                                       "metadata": {"name": f"m{i}", "namespace": ns, "labels": {"bench": "run"}},
                                       "spec": {"selector": {"name": f"vm{i}"}}}, ns)
        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))
        deadline = time.monotonic() + max(180.0, n * 0.5)
        while True:
            items = client.list_all(MIGRATIONS, ns, label_selector="bench=run")
            done = [m for m in items if (m.get("status") or {}).get("phase") == "Succeeded"
                    and not m["metadata"].get("finalizers")]
            failed = [m for m in items if (m.get("status") or {}).get("phase") == "Failed"]
            if len(done) + len(failed) == n or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        fig.wall_s = time.monotonic() - t0
        settle_end, last = time.monotonic() + 30, proc_cpu_s(proc.pid)
        while time.monotonic() < settle_end:  # Events are written behind the workers: count until idle
            time.sleep(0.5)
            cur = proc_cpu_s(proc.pid)
            if cur - last < 0.02:
                break
            last = cur
        fig.cpu_ms = (proc_cpu_s(proc.pid) - cpu0) / n * 1000
        fig.sys_ms = (proc_cpu_split_s(proc.pid)[1] - sys0) / n * 1000
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        lat = []
        for m in done:
            ok = [p["time"] for p in m["status"].get("phaseTransitionTimestamps") or [] if p["phase"] == "Succeeded"]
            if ok and m["metadata"]["name"] in created_at:
                lat.append(_ts(ok[-1]) - created_at[m["metadata"]["name"]])
        fig.p50_s, fig.p99_s = _quantile(lat, 0.50), _quantile(lat, 0.99)
        fig.rss_mib = proc_hwm_mib(proc.pid)
        text = _metrics(port)
        fig.e2a_p99_ms = histogram_quantile(text, "virtmigrate_controller_event_to_action_seconds", 0.99) * 1000
        fig.syncs = (counter_sum(text, "virtmigrate_controller_syncs_total", 'controller="migration"') - syncs0) / n
        fig.ok, fig.failed = len(done), len(failed)
        print(f"  [{fig.code} n={n} history={preload}] {fig.ok} Succeeded, {fig.failed} Failed in {fig.wall_s:.1f}s; "
              f"CPU {fig.cpu_ms:.2f} ms/migration ({fig.sys_ms:.2f} system); "
              f"create->Succeeded p50 {fig.p50_s:.2f}s p99 {fig.p99_s:.2f}s; "
              f"peak RSS {fig.rss_mib:.0f} MiB; event-to-action p99 {fig.e2a_p99_ms:.0f} ms; "
              f"{fig.syncs:.1f} syncs/migration", flush=True)
        if failed:
            print("    first failure:", (failed[0].get("status") or {}).get("message"))
    finally:
        kubelet.stop.set()
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
        _cleanup(client, ns)
    return fig


def _r(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and b == b and a == a else "n/a"


def _median_figures(group: list[Figures]) -> Figures:
    """One scenario's figures over its rounds: the median of each."""
    import statistics

    def med(attr: str) -> float:
        return float(statistics.median(float(getattr(f, attr)) for f in group))

    first = group[0]
    return Figures(first.code, first.n, first.preload, cpu_ms=med("cpu_ms"), sys_ms=med("sys_ms"), p50_s=med("p50_s"),
                   p99_s=med("p99_s"), rss_mib=med("rss_mib"), e2a_p99_ms=med("e2a_p99_ms"), syncs=med("syncs"),
                   wall_s=med("wall_s"), ok=min(f.ok for f in group), failed=max(f.failed for f in group))


def _per_round(over: list[Figures], under: list[Figures]) -> str:
    """"; CPU per round ..." — each round's CPU ratio of `over` to `under` and their median; "" for one round."""
    import statistics

    pairs = list(zip(sorted(under, key=lambda x: x.round), sorted(over, key=lambda x: x.round), strict=False))
    if len(pairs) < 2:
        return ""
    per = [o.cpu_ms / u.cpu_ms for u, o in pairs]
    return f"; CPU per round {', '.join(f'{r:.2f}x' for r in per)} (median {statistics.median(per):.2f}x)"


def report(figs: list[Figures]) -> None:
    """The history ratio (finished Migrations pre-loaded vs empty caches) per code and size, and, with a
    baseline, new vs baseline in each scenario. With several rounds, each figure is the median over the rounds
    and new / baseline is also given per round (each round's two runs are adjacent in time)."""

    groups: dict[tuple[str, int, int], list[Figures]] = {}
    for f in figs:
        groups.setdefault((f.code, f.n, f.preload), []).append(f)
    by = {k: _median_figures(g) for k, g in groups.items()}
    rounds = max(len(g) for g in groups.values())
    print("scale summary (CPU = controller CPU per migration; p50/p99 = create -> Succeeded; RSS = peak"
          + (f"; the median of {rounds} rounds" if rounds > 1 else "") + "):")
    for f in by.values():
        print(f"  {f.code:8} n={f.n:<5} history={f.preload:<6} CPU {f.cpu_ms:6.2f} ms  p50 {f.p50_s:6.2f}s  "
              f"p99 {f.p99_s:6.2f}s  RSS {f.rss_mib:5.0f} MiB  ({f.ok}/{f.n} Succeeded)")
    for (code, n, pre), f in by.items():
        if pre == 0:
            continue
        e = by.get((code, n, 0))
        if e is not None:
            line = (f"  history ratio, {code}, n={n} ({pre} finished / empty): CPU {_r(f.cpu_ms, e.cpu_ms)} "
                    f"(goal <= 1.1x), p50 {_r(f.p50_s, e.p50_s)}, p99 {_r(f.p99_s, e.p99_s)}, "
                    f"RSS {_r(f.rss_mib, e.rss_mib)}")
            print(line + _per_round(groups[(code, n, pre)], groups[(code, n, 0)]))
    for (code, n, pre), f in by.items():
        b = by.get(("baseline", n, pre))
        if code == "new" and b is not None:
            line = (f"  new / baseline, n={n} history={pre}: CPU {_r(f.cpu_ms, b.cpu_ms)}, p50 {_r(f.p50_s, b.p50_s)}, "
                    f"p99 {_r(f.p99_s, b.p99_s)}, RSS {_r(f.rss_mib, b.rss_mib)}")
            print(line + _per_round(groups[(code, n, pre)], groups[("baseline", n, pre)]))


def scale(sizes: list[int], preload: int, kubeconfig: str | None, *, workers: int = 16,
          baseline: str | None = None, rounds: int = 1) -> None:
    """Every size, with empty caches and with `preload` finished Migrations; with `baseline`, that source
    tree's controller runs each scenario too, interleaved (same API server, same minute). `rounds`: every
    scenario once per round, the order of the sides and of the two cache sizes alternating round by round
    (this machine's speed drifts by a third within minutes: a ratio from runs of the same round, repeated, is
    what can be trusted)."""
    state: Path | None = None
    cp = None
    if kubeconfig is None:
        from virtmigrate.local.controlplane import ControlPlane
        state = Path(tempfile.mkdtemp(prefix="bench-controller-"))
        cp = ControlPlane(state)
        cp.up()
        kubeconfig = str(cp.kubeconfig)
        subprocess.run([str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}", "apply", "--validate=false", "-f",
                        str(REPO / "manifests" / "crds")], check=True, capture_output=True)
        subprocess.run([str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}", "wait", "--for=condition=Established",
                        "crd/migrations.kubevirt.io", "crd/vms.kubevirt.io"], check=True, capture_output=True)
    figs: list[Figures] = []
    try:
        client = KubeClient.from_kubeconfig(kubeconfig)
        nodes = make_nodes(client, 10)
        print(history_config(baseline), flush=True)
        codes = ([baseline] if baseline else []) + ["new"]
        pres = sorted({0, preload})
        for n in sizes:
            for r in range(rounds):  # each round runs every scenario, the orders alternating round by round
                for pre in (pres if r % 2 == 0 else pres[::-1]):
                    for code in (codes if r % 2 == 0 else codes[::-1]):
                        f = run_scenario(client, kubeconfig, nodes, code=code, n=n, preload=pre, workers=workers)
                        f.round = r
                        figs.append(f)
        report(figs)
    finally:
        if cp is not None:
            cp.down()
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)


# --- e2e: moved to bench/bench_e2e.py (kept here as a sub-command for old invocations) ---------------

def _ts(text: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def e2e(runs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_e2e import e2e as run_e2e

    run_e2e(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scale")
    s.add_argument("--n", default="200,1000", help="comma-separated numbers of concurrent Migrations")
    s.add_argument("--preload", type=int, default=10_000, help="finished Migrations cached in the history runs")
    s.add_argument("--workers", type=int, default=16)
    s.add_argument("--rounds", type=int, default=1, help="runs of each scenario per side, the sides' order alternating")
    s.add_argument("--baseline", default=None, help="a source tree whose controller runs every scenario too")
    s.add_argument("--new", default=None, help="a source tree to run as the new side (default: this tree), so "
                                               "that edits made while the bench runs do not reach it")
    e = sub.add_parser("e2e")
    e.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.what == "scale":
        global NEW_TREE
        NEW_TREE = args.new
        scale([int(x) for x in args.n.split(",")], args.preload, os.environ.get("VIRTMIGRATE_BENCH_KUBECONFIG"),
              workers=args.workers, baseline=args.baseline, rounds=args.rounds)
        return 0
    e2e(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
