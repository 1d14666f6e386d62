"""Local cluster: cold and warm `cluster up` times, and the memory of an idle cluster.

Cold: a fresh state directory (new PKI, etcd, libvirt hosts with an empty QEMU capabilities cache,
node runner, controller); binaries and the guest kernel are cached as after `make setup`.
Warm: `up` again while everything runs (what `make cluster-up` costs the second time).
Memory: proportional set size (PSS, shared pages split fairly) and RSS of every process of the cluster,
idle (no VM) and then with one 64 MiB guest running. Each run brings up its own cluster and takes it down.

    python bench/bench_cluster.py [--nodes 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from virtmigrate.kube.resources import VMS  # noqa: E402
from virtmigrate.local.cluster import LocalCluster, cluster_namespaces  # noqa: E402
from virtmigrate.local.guest import guest_kernel  # noqa: E402
from virtmigrate.local.libvirthosts import mount_ns  # noqa: E402

BENCH_FIRST_ADDRESS = 40  # migration addresses 127.0.0.40+: apart from dev and e2e clusters


def _mem_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in KiB."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def _cluster_pids(state: Path, namespaces: list[str]) -> dict[str, list[int]]:
    """Processes of the cluster by component: command line mentions its state dir, or they live in one
    of its libvirt hosts' mount namespaces (libvirtd, tini, QEMU)."""
    out: dict[str, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        cmd = b" ".join(argv).decode(errors="replace")
        in_ns = mount_ns(pid) in namespaces
        if str(state) not in cmd and not in_ns:
            continue
        exe = Path(argv[0].decode(errors="replace")).name
        if "noderunner" in cmd:
            name = "node runner"
        elif "virtmigrate-controller" in cmd:
            name = "controller"
        elif "qemu-system" in exe:
            name = "qemu (guests)"
        elif exe in ("libvirtd", "tini", "sh", "unshare"):
            name = "libvirt hosts"
        elif in_ns:
            name = "pods (launchers)"
        else:
            name = exe
        out[name].append(pid)
    return out


def _memory_table(state: Path, namespaces: list[str]) -> tuple[float, float, dict[str, tuple[float, float, int]]]:
    rows = {}
    for name, pids in sorted(_cluster_pids(state, namespaces).items()):
        mem = [_mem_kib(p) for p in pids]
        rows[name] = (sum(m[0] for m in mem) / 1024, sum(m[1] for m in mem) / 1024, len(pids))
    return sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values()), rows


def _print_memory(title: str, total_pss: float, total_rss: float, rows: dict[str, tuple[float, float, int]]) -> None:
    print(f"\n{title}: PSS {total_pss:.0f} MiB (RSS {total_rss:.0f} MiB)")
    for name, (pss, rss, n) in rows.items():
        print(f"  {name:<20} {n:>3} proc  PSS {pss:7.1f} MiB  RSS {rss:7.1f} MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="cold/warm rounds (each a fresh cluster)")
    args = ap.parse_args()
    kernel = guest_kernel()
    colds, warms = [], []
    stages: dict[str, list[float]] = defaultdict(list)
    for r in range(args.rounds):
        state = Path(tempfile.mkdtemp(prefix="virtmigrate-bench-"))
        c = LocalCluster(state, nodes=args.nodes, first_address=BENCH_FIRST_ADDRESS)
        try:
            t0 = time.monotonic()
            rep = c.up()
            colds.append(time.monotonic() - t0)
            for k, v in rep.seconds.items():
                stages[k].append(v)
            t0 = time.monotonic()
            c.up()
            warms.append(time.monotonic() - t0)
            if r == args.rounds - 1:
                time.sleep(5)  # let start-up allocations settle: "idle" means after start-up
                namespaces = cluster_namespaces(c)
                _print_memory(f"idle {args.nodes}-node cluster", *_memory_table(state, namespaces))
                kube = c.client()
                kube.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
                                  "metadata": {"name": "bench", "namespace": "default"},
                                  "spec": {"running": True, "memory": "64Mi", "kernel": str(kernel)}})
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    if (kube.get(VMS, "bench", "default").get("status") or {}).get("phase") == "Running":
                        break
                    time.sleep(0.2)
                time.sleep(3)
                _print_memory("same cluster, one 64 MiB VM running", *_memory_table(state, namespaces))
        finally:
            c.down()
            shutil.rmtree(state, ignore_errors=True)
    cold, warm = statistics.median(colds), statistics.median(warms)
    print(f"\ncluster up, {args.nodes} nodes, {args.rounds} rounds (median)")
    print(f"  cold: {cold:6.2f} s   ({', '.join(f'{x:.2f}' for x in colds)})")
    for k, v in stages.items():
        print(f"        {k:<14} {statistics.median(v):6.2f} s")
    print(f"  warm: {warm:6.2f} s   ({', '.join(f'{x:.2f}' for x in warms)})")
    print(f"  warm/cold ratio: {warm / cold:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
