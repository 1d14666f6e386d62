"""`python -m tests.chaos` (make chaos): the seeded campaign on a local cluster.

Flags fall back to environment variables, so `make chaos SEED=7 ROUNDS=50` and `make chaos SEED=7 ROUND=37`
(replay one round's plan; `ROUND=3,37` several) work. The cluster lives in $VIRTMIGRATE_STATE: reused
when it runs (and left running), else brought up for the campaign and taken down after it. Exit 0 when
no round violated anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    ap = argparse.ArgumentParser(prog="make chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=int(env.get("SEED", "1")), help="campaign seed [$SEED, 1]")
    ap.add_argument("--rounds", type=int, default=int(env.get("ROUNDS", "200")), help="rounds [$ROUNDS, 200]")
    ap.add_argument("--first", type=int, default=int(env.get("FIRST", "0")), help="first round [$FIRST, 0]")
    ap.add_argument("--round", default=env.get("ROUND", ""),
                    help="run only these rounds, comma-separated (replay) [$ROUND]")
    ap.add_argument("--vms", type=int, default=int(env.get("VMS", "3")), help="VMs migrated per round [$VMS, 3]")
    ap.add_argument("--report", type=Path, default=Path(env["REPORT"]) if env.get("REPORT") else None,
                    help="write the rounds and the summary as JSON here [$REPORT]")
    ap.add_argument("--recovery-bound", type=float, default=float(env.get("RECOVERY_BOUND", "90")),
                    help="seconds from a fault until every invariant must hold [$RECOVERY_BOUND, 90]")
    ap.add_argument("--skip-faults", default=env.get("SKIP_FAULTS", ""),
                    help="fault kinds never drawn, comma-separated, e.g. noderunner-kill [$SKIP_FAULTS]")
    args = ap.parse_args(argv)

    from tests.chaos.campaign import Campaign
    from tests.chaos.plan import Fault
    from virtmigrate.local.cluster import FIRST_MIGRATION_ADDRESS, LocalCluster
    from virtmigrate.local.controlplane import default_state_dir
    from virtmigrate.local.guest import guest_kernel

    state = default_state_dir()
    first_address = int(env.get("VIRTMIGRATE_E2E_FIRST_ADDRESS", str(FIRST_MIGRATION_ADDRESS)))
    lc = LocalCluster(state, first_address=first_address)
    ours = not lc.running_any()
    if ours:
        lc = LocalCluster(state, nodes=3, first_address=first_address)
    print(f"chaos: cluster in {state} ({'starting it' if ours else 'reusing it'})", flush=True)
    lc.up(timeout=180)
    rounds = [int(r) for r in args.round.split(",")] if args.round else \
        list(range(args.first, args.first + args.rounds))
    c = Campaign(lc, seed=args.seed, kernel=guest_kernel(), vms=args.vms, report=args.report,
                 recovery_bound_s=args.recovery_bound, log=lambda s: print(s, flush=True),
                 skip=frozenset(Fault(f.strip()) for f in args.skip_faults.split(",") if f.strip()))
    try:
        c.setup()
        c.run(rounds)
    finally:
        summary = c.summary()  # also when a round could not even be set up: what ran so far
        print(summary.text(), flush=True)
        c.teardown()
        lc.up(timeout=180)  # leave every process of the cluster running, as found
        if ours:
            lc.down()
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
