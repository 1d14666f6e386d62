"""The migration agent against plain `virsh migrate --live --p2p --persistent --undefinesource`.

Same 256 MiB idle guest (RAM filled with data), same two libvirt hosts, one invocation. Three arms:
  agent      the agent with its default policy (allowed downtime starts at 50 ms and steps up to 500 ms);
  agent-300  the agent allowed libvirt's default 300 ms from the start (what virsh runs with), so the
             difference to virsh is the agent's own cost;
  virsh      `virsh migrate` with libvirt's defaults.
The guest ping-pongs between the hosts; the arms rotate (A V B B V A) so each moves it both ways.
All run as processes inside the source host's mount namespace (qemu:///system), as the agent does
in its pod. Per run: process wall time (spawn to exit), libvirt's job time and the downtime libvirt
reports (the destination's completed job statistics). Prints medians and the ratios to virsh.

    python bench/bench_agent.py [--runs 5] [--memory 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from virtmigrate.local.guest import GuestSpec, domain_xml, guest_kernel
from virtmigrate.local.libvirthosts import LibvirtHosts

REPO = Path(__file__).resolve().parent.parent


def completed_stats(hosts: LibvirtHosts, dst: int, name: str) -> dict[str, str]:
    out = hosts.virsh(dst, "domjobinfo", "--completed", name).stdout
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


OVERHEAD: dict[str, list[tuple[float, float]]] = {}  # agent arms: (migrateToURI3 call s, rest of the wall s)


def migrate(tool: str, hosts: LibvirtHosts, name: str, src: int, dst: int, tmp: Path) -> tuple[float, int, float]:
    """One migration; returns (process wall s, libvirt downtime ms, libvirt job time s)."""
    d = hosts.host(dst)
    if tool.startswith("agent"):
        argv = [sys.executable, "-m", "virtmigrate.cmd.agent", "--domain", name, "--destination-uri", d.uri,
                "--migration-uri", d.migration_uri, "--termination-message-path", str(tmp / "term.json")]
        if tool == "agent-300":
            argv += ["--max-downtime", "300", "--downtime-steps", "1"]
    else:
        argv = ["virsh", "-c", "qemu:///system", "migrate", "--live", "--p2p", "--persistent",
                "--undefinesource", name, d.uri, d.migration_uri]
    cmd = [*hosts.nsenter(src), *argv]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    stats = completed_stats(hosts, dst, name)
    downtime = int(stats.get("Total downtime", "0 ms").split()[0])
    elapsed = int(stats.get("Time elapsed", "0 ms").split()[0]) / 1000
    if tool.startswith("agent"):
        result = json.loads((tmp / "term.json").read_text())
        assert result["outcome"] == "succeeded", result
        call = float(result["durationSeconds"])
        OVERHEAD.setdefault(tool, []).append((call, wall - call))
    return wall, downtime, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="migrations per tool (at least 5)")
    ap.add_argument("--memory", type=int, default=256, help="guest memory, MiB")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="virtmigrate-bench-agent-"))
    hosts = LibvirtHosts(state, 2, first_address=int(os.environ.get("VIRTMIGRATE_E2E_FIRST_ADDRESS", "50")))
    name = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        hosts.up()
        xml = state / "guest.xml"
        xml.write_text(domain_xml(GuestSpec(name, str(uuid.uuid4()), guest_kernel(), args.memory, "idle")))
        hosts.virsh(0, "define", str(xml))
        hosts.virsh(0, "start", name)
        serial = hosts.host(0).qemu_log_dir / f"{name}-serial.log"
        deadline = time.monotonic() + 60
        while "heartbeat" not in (serial.read_text() if serial.exists() else ""):
            if time.monotonic() > deadline:
                raise SystemExit("guest did not come up")
            time.sleep(0.1)
        arms = ("agent", "agent-300", "virsh")
        order = ["agent", "virsh", "agent-300", "agent-300", "virsh", "agent"] * ((args.runs + 1) // 2)
        order = order[: 3 * args.runs]
        figures: dict[str, list[tuple[float, int, float]]] = {a: [] for a in arms}
        where = 0
        print(f"guest {args.memory} MiB idle (RAM filled), {len(order)} migrations, rotating A V B B V A")
        print(f"{'run':>3} {'tool':9} {'dir':5} {'wall s':>7} {'job s':>6} {'downtime ms':>11}")
        for i, tool in enumerate(order):
            time.sleep(1.0)  # let the guest settle on its new host
            wall, downtime, job = migrate(tool, hosts, name, where, 1 - where, state)
            figures[tool].append((wall, downtime, job))
            print(f"{i + 1:>3} {tool:9} {where}->{1 - where:<2} {wall:7.3f} {job:6.3f} {downtime:11d}")
            where = 1 - where
        med = {t: (statistics.median(w for w, _, _ in f), statistics.median(d for _, d, _ in f),
                   statistics.median(j for _, _, j in f)) for t, f in figures.items()}
        for t in arms:
            w, d, j = med[t]
            print(f"median {t:9}: wall {w:.3f} s, libvirt job {j:.3f} s, downtime {d:.0f} ms "
                  f"(all: {sorted(x[1] for x in figures[t])})")
        for t in ("agent", "agent-300"):
            print(f"{t:9} / virsh (median): wall {med[t][0] / med['virsh'][0]:.3f}x (target <= 1.05x), "
                  f"libvirt job {med[t][2] / med['virsh'][2]:.3f}x, downtime {med[t][1]:.0f} vs "
                  f"{med['virsh'][1]:.0f} ms")
            call, rest = (statistics.median(x[i] for x in OVERHEAD[t]) for i in range(2))
            print(f"{t:9} breakdown (median): migrateToURI3 call {call:.3f} s, the rest of the process "
                  f"(start-up, connections, verification, exit) {rest:.3f} s")
        virsh_overhead = statistics.median(w - j for w, _, j in figures["virsh"])
        agent_overhead = statistics.median(w - j for w, _, j in figures["agent-300"])
        print(f"process wall minus libvirt job time (median): agent-300 {agent_overhead:.3f} s, "
              f"virsh {virsh_overhead:.3f} s")
        return 0
    finally:
        hosts.down()
        subprocess.run(["rm", "-rf", str(state)], check=False)


if __name__ == "__main__":
    sys.exit(main())
