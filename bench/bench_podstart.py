"""How fast the pods on a migration's critical path get to work.

The launcher: a receive-mode launcher's first report, process start -> the annotation
`virtmigrate.kubevirt.io/domain` on its pod, as a watch on the API sees it. That report is what turns a
Migration TargetReady, so it is on the critical path of every migration.

The agent: process start -> its migrate call (the job's start, from the agent's own log), migrating an
unmanaged 64 MiB guest back and forth between two libvirt hosts of the cluster, in two ways interleaved:
  gated     with --await-target-uid, as an agent created before its target is ready (the early start) runs:
            it makes its API client at once and reads its Migration (TargetReady) before the job starts;
  at-ready  without it, as an agent created at TargetReady runs (the default): it makes its API client on
            first use, once the job runs.
Both read and write a Migration object of the bench's namespace; the cluster's controller is stopped
meanwhile (it would fail that Migration: it selects no VM) and started again after.

Runs `virtmigrate-launcher --mode=receive` for a domain that never arrives against a real libvirt host of
a local cluster (the one at $VIRTMIGRATE_STATE, started if needed), with the pod's identity in
POD_NAME/POD_NAMESPACE and the cluster's admin kubeconfig; the pod object exists but is bound to no node, so
nothing else runs it.
With `--baseline DIR` (a source tree, e.g. `git archive main | tar -x -C DIR`) the same launcher of that
tree runs too, interleaved, and the ratio new / baseline is printed. Also prints the import time of the
modules each entry point loads before its first action (`python -X importtime`), new and baseline.

Usage: python bench/bench_podstart.py [--runs 9] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN  # noqa: E402
from virtmigrate.kube.resources import MIGRATIONS, NAMESPACES, PODS  # noqa: E402

BIN = Path(sys.executable).parent
NS = "bench-podstart"


def launcher_argv(code: str, uri: str, domain: str) -> tuple[list[str], dict[str, str]]:
    args = ["--mode=receive", f"--domain-name={domain}", f"--uri={uri}", "--receive-timeout=30"]
    if code == "new":
        return [str(BIN / "virtmigrate-launcher"), *args], {}
    return [sys.executable, "-m", "virtmigrate.cmd.launcher", *args], {"PYTHONPATH": code}


def one(client: object, code: str, uri: str, kubeconfig: Path, i: int) -> float:
    from virtmigrate.kube.client import KubeClient

    assert isinstance(client, KubeClient)
    pod = f"launcher-{i}"
    client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": NS},
                         "spec": {"nodeName": "bench-nowhere", "containers": [{"name": "c", "image": "none"}]}}, NS)
    rv = client.get(PODS, pod, NS)["metadata"]["resourceVersion"]
    argv, extra = launcher_argv(code, uri, f"bench-absent-{i}")
    env = {**os.environ, **extra, "POD_NAME": pod, "POD_NAMESPACE": NS, "KUBECONFIG": str(kubeconfig),
           "VIRTMIGRATE_TERMINATION_LOG": "/dev/null"}
    t0 = time.monotonic()
    # cwd "/": `python -m` puts the working directory first on sys.path, before the baseline's PYTHONPATH
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    took = float("nan")
    try:
        for ev in client.watch(PODS, NS, resource_version=rv, timeout_seconds=30,
                               field_selector=f"metadata.name={pod}"):
            if (ev.object["metadata"].get("annotations") or {}).get(ANNOTATION_DOMAIN):
                took = time.monotonic() - t0
                break
    finally:
        proc.terminate()
        proc.wait(10)
        client.delete(PODS, pod, NS, grace_period_seconds=0)
    return took


def import_ms(code: str, modules: str) -> float:
    env = {**os.environ, **({"PYTHONPATH": code} if code != "new" else {})}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {modules}"], env=env,
                         capture_output=True, text=True, check=True, cwd="/").stderr
    total = 0
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].rstrip() and not parts[2].startswith(" " * 2) and parts[1].strip().isdigit():
            total += int(parts[1])  # top-level imports' cumulative times
    return total / 1000


ENTRY_MODULES = {
    "launcher (all it loads before its first report)":
        "virtmigrate.cmd.launcher, virtmigrate.launcher.holder, virtmigrate.launcher.domain, "
        "virtmigrate.launcher.report, virtmigrate.kube.client",
    "agent (before its migrate call)": "virtmigrate.cmd.agent, virtmigrate.agent.migrate",
    "agent's API client (progress, on its own thread)": "virtmigrate.kube.client",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--baseline", default=None)
    args = ap.parse_args()
    codes = ([args.baseline] if args.baseline else []) + ["new"]
    names = {c: ("new" if c == "new" else "baseline") for c in codes}
    print("import time, median of 5 (ms):")
    for what, mods in ENTRY_MODULES.items():
        med = {c: statistics.median(import_ms(c, mods) for _ in range(5)) for c in codes}
        ratio = f", new / baseline {med['new'] / med[args.baseline]:.2f}x" if args.baseline else ""
        print(f"  {what}: " + ", ".join(f"{names[c]} {v:.0f}" for c, v in med.items()) + ratio, flush=True)

    from virtmigrate.local.cluster import LocalCluster

    state = os.environ.get("VIRTMIGRATE_STATE")
    if not state:
        print("launcher first report: skipped (no local cluster: set $VIRTMIGRATE_STATE)")
        return 0
    lc = LocalCluster(Path(state), first_address=int(os.environ.get("VIRTMIGRATE_E2E_FIRST_ADDRESS", "20")))
    lc.up()  # cheap when it runs
    client = lc.client()
    uri = lc.hosts.host(0).uri
    with contextlib.suppress(Exception):  # it exists from an earlier run
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    took: dict[str, list[float]] = {c: [] for c in codes}
    for i in range(args.runs):
        for c in codes:
            took[c].append(one(client, c, uri, lc.kubeconfig, i * 10 + codes.index(c)))
    med = {c: statistics.median(v) for c, v in took.items()}
    print("launcher: process start -> its first report seen on the pod (median of "
          f"{args.runs}): " + ", ".join(f"{names[c]} {med[c] * 1000:.0f} ms" for c in codes)
          + (f"; new / baseline {med['new'] / med[args.baseline]:.2f}x" if args.baseline else ""))
    print("  runs: " + json.dumps({names[c]: [round(x * 1000) for x in v] for c, v in took.items()}))
    agent_start(lc, client, args.runs)
    return 0


AGENT_MODES = ("gated", "at-ready")
AGENT_GUEST = "bench-agentstart"


def agent_one(client: object, lc: Any, mode: str, src: int, dst: int, uid: str, tmp: Path) -> float:
    """Seconds from the agent's spawn to its migrate call, migrating AGENT_GUEST from host `src` to `dst`."""
    s, d = lc.hosts.host(src), lc.hosts.host(dst)
    argv = [str(BIN / "virtmigrate-agent"), f"--domain={AGENT_GUEST}", f"--source-uri={s.uri}",
            f"--destination-uri={d.uri}", f"--migration-uri={d.migration_uri}", "--migration=agentstart",
            f"--namespace={NS}", f"--kubeconfig={lc.kubeconfig}", f"--termination-message-path={tmp / 'term'}"]
    if mode == "gated":
        argv.append(f"--await-target-uid={uid}")
    w0 = time.time()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    if run.returncode != 0:
        raise RuntimeError(f"agent ({mode}) exited {run.returncode}: {run.stderr[-2000:]}")
    for line in run.stderr.splitlines() + run.stdout.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("event") == "migration_finished" and rec.get("job_started"):
                return dt.datetime.fromisoformat(rec["job_started"].replace("Z", "+00:00")).timestamp() - w0
    raise RuntimeError(f"agent ({mode}): no job_started in its log")


def agent_start(lc: Any, client: Any, runs: int) -> None:
    from virtmigrate.local import procs
    from virtmigrate.local.cluster import CONTROLLER
    from virtmigrate.local.guest import GuestSpec, domain_xml, guest_kernel

    procs.stop(f"{CONTROLLER}-supervisor", lc.state, grace=5)  # else it starts the controller again
    procs.stop(CONTROLLER, lc.state, grace=10)
    tmp = Path(tempfile.mkdtemp(prefix="bench-agentstart-"))
    at = 0
    try:
        with contextlib.suppress(Exception):
            client.delete(MIGRATIONS, "agentstart", NS)
        mig = client.create(MIGRATIONS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                                         "metadata": {"name": "agentstart", "namespace": NS},
                                         "spec": {"selector": {"name": "none"}}}, NS)
        client.patch(MIGRATIONS, "agentstart", {"status": {"phase": "TargetReady"}}, NS, subresource="status")
        xml = tmp / "guest.xml"
        xml.write_text(domain_xml(GuestSpec(name=AGENT_GUEST, uuid="8c9b0d0e-0000-4000-8000-0000000a9e57",
                                            memory_mib=64, kernel=guest_kernel())))
        lc.hosts.virsh(0, "create", str(xml))
        time.sleep(2)  # it fills its RAM at boot
        took: dict[str, list[float]] = {m: [] for m in AGENT_MODES}
        for i in range(runs):
            for mode in (AGENT_MODES if i % 2 == 0 else AGENT_MODES[::-1]):
                took[mode].append(agent_one(client, lc, mode, at, 1 - at, mig["metadata"]["uid"], tmp))
                at = 1 - at
        med = {m: statistics.median(v) for m, v in took.items()}
        print(f"agent: process start -> its migrate call (median of {runs}): gated {med['gated'] * 1000:.0f} ms, "
              f"at-ready {med['at-ready'] * 1000:.0f} ms; at-ready / gated {med['at-ready'] / med['gated']:.2f}x")
        print("  runs: " + json.dumps({m: [round(x * 1000) for x in v] for m, v in took.items()}))
    finally:
        with contextlib.suppress(Exception):
            lc.hosts.virsh(at, "destroy", AGENT_GUEST)
        with contextlib.suppress(Exception):
            lc.hosts.virsh(at, "undefine", AGENT_GUEST)
        with contextlib.suppress(Exception):
            client.delete(MIGRATIONS, "agentstart", NS)
        lc.start_controller()


if __name__ == "__main__":
    sys.exit(main())
