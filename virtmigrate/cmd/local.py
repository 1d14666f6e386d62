"""`virtmigrate cluster up|down|status`: the embedded local cluster on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from virtmigrate.local.controlplane import ControlPlane, default_state_dir


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="virtmigrate", description=__doc__)
    ap.add_argument("--state-dir", type=Path, default=None,
                    help="where the cluster keeps its state (default $VIRTMIGRATE_STATE or "
                         "~/.local/state/virtmigrate)")
    sub = ap.add_subparsers(dest="command", required=True)
    cl = sub.add_parser("cluster", help="the local control plane")
    cl.add_argument("action", choices=["up", "down", "status"])
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state = args.state_dir or default_state_dir()
    cp = ControlPlane(state)
    if args.action == "up":
        took = cp.up()
        print(f"control plane ready at {cp.server} ({took:.1f}s)", file=sys.stderr)
        print(f"export KUBECONFIG={cp.kubeconfig}")
        return 0
    if args.action == "down":
        stopped = cp.down()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        return 0
    print("running" if cp.running() else "stopped")
    return 0 if cp.running() else 3


if __name__ == "__main__":
    sys.exit(main())
