"""`virtmigrate-launcher`: the process of a VM's launcher pod (contract: virtmigrate.controller.vm.pods).

Parses the command line, connects to the node's libvirt, runs the launcher (virtmigrate.launcher.holder)
until the domain leaves, stops or is shut down on SIGTERM, writes the termination message
(`<Reason>: <message>`) to $VIRTMIGRATE_TERMINATION_LOG (the node runner's) or /dev/termination-log,
and exits with the code of virtmigrate.launcher.exitcodes. `--probe` is the readiness probe: a process
the node runner starts every probe period, so it imports only libvirt and the probe itself (not even argparse).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from types import FrameType

CONNECT_TIMEOUT_S = 30.0
REPORT_FLUSH_S = 5.0  # before exiting: how long the last domain report may take to reach the pod


def _parser() -> argparse.ArgumentParser:
    import argparse

    ap = argparse.ArgumentParser(prog="virtmigrate-launcher", description=__doc__)
    ap.add_argument("--mode", choices=["start", "receive"], default="start")
    ap.add_argument("--domain-name", required=True)
    ap.add_argument("--domain-uuid", default="")
    ap.add_argument("--memory-bytes", type=int, default=0)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--kernel", default="")
    ap.add_argument("--cmdline", default="")
    ap.add_argument("--disk", default="")
    ap.add_argument("--shutdown-timeout", type=float, default=5.0)
    ap.add_argument("--receive-timeout", type=float, default=600.0)
    ap.add_argument("--uri", default="qemu:///system", help="the node's libvirt (default: the local socket)")
    ap.add_argument("--probe", action="store_true", help="readiness probe: exit 0 iff ready")
    return ap


def _write_termination_message(text: str) -> None:
    import contextlib
    import os
    from pathlib import Path

    path = Path(os.environ.get("VIRTMIGRATE_TERMINATION_LOG") or "/dev/termination-log")
    with contextlib.suppress(OSError):  # no termination-log file (run by hand): the log still has it
        path.write_text(text + "\n")


def _publisher(clock: Any, log: Any) -> Any:
    """The pod's domain report (launcher/report.py), when the pod names itself ($POD_NAME, $POD_NAMESPACE)
    and has API access (a service-account token or $KUBECONFIG); else None, logged: the controllers then
    cannot verify where the guest runs and wait, bounded, before they fail what depends on it."""
    import os

    from virtmigrate.launcher.report import FactsPublisher, Patcher

    pod, ns = os.environ.get("POD_NAME", ""), os.environ.get("POD_NAMESPACE", "")
    if not pod or not ns:
        log.warning("domain_report_disabled", error="POD_NAME and POD_NAMESPACE are not set")
        return None

    def connect() -> Patcher:
        from virtmigrate.kube import KubeClient

        return Patcher(KubeClient.auto(), pod, ns)

    return FactsPublisher(connect, now=clock.now, log=log)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if "--probe" in given:  # before argparse: the probe runs every probe period, its cost is the node's
        from virtmigrate.launcher.probe import probe, probe_args

        mode, name, uri = probe_args(given)
        return 0 if probe(mode, name, uri=uri) else 1
    args = _parser().parse_args(argv)

    import signal
    import threading

    from virtmigrate.clock import RealClock
    from virtmigrate.errors import LibvirtError
    from virtmigrate.jsonlog import JsonLogger
    from virtmigrate.launcher.domain import LibvirtNode
    from virtmigrate.launcher.domainxml import GuestConfig
    from virtmigrate.launcher.exitcodes import ExitCode, Outcome, Reason
    from virtmigrate.launcher.holder import Launcher, LauncherConfig

    log = JsonLogger(logger="launcher")
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    clock = RealClock()
    # First, so that loading the API client (its own thread) overlaps the libvirt connection: a target's
    # first report is what lets its migration start.
    publisher = _publisher(clock, log)
    deadline = clock.now() + CONNECT_TIMEOUT_S
    node: LibvirtNode | None = None
    while node is None:
        try:
            node = LibvirtNode(args.uri)
        except LibvirtError as e:
            if clock.now() >= deadline or stop.is_set():
                outcome = Outcome(Reason.LIBVIRT_UNREACHABLE, f"{args.uri}: {e}")
                _write_termination_message(outcome.termination_message())
                return outcome.exit_code
            clock.wait(stop, 0.5)
    guest = GuestConfig(name=args.domain_name, uuid=args.domain_uuid, memory_bytes=args.memory_bytes,
                        cpus=args.cpus, kernel=args.kernel, cmdline=args.cmdline, disk=args.disk)
    cfg = LauncherConfig(mode=args.mode, guest=guest, shutdown_timeout_s=args.shutdown_timeout,
                         receive_timeout_s=args.receive_timeout)
    try:
        outcome = Launcher(node, cfg, clock=clock, stop=stop,
                           report=publisher.offer if publisher is not None else None).run()
    except Exception as e:  # whatever happened, the pod must say why it ended
        outcome = Outcome(Reason.INTERNAL, f"{type(e).__name__}: {e}")
    finally:
        node.close()
    if publisher is not None and not publisher.flush(REPORT_FLUSH_S):
        log.warning("domain_report_unsent", timeout_s=REPORT_FLUSH_S)
    _write_termination_message(outcome.termination_message())
    log.info("launcher_exit", code=outcome.exit_code, reason=outcome.reason.value, message=outcome.message)
    return outcome.exit_code if outcome.exit_code != ExitCode.OK else 0


if __name__ == "__main__":
    sys.exit(main())
