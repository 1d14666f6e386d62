"""The launcher's readiness probe (`virtmigrate-launcher --probe`): exit 0 iff the pod should be Ready.

Run by the node runner (or a kubelet) as an exec probe in the launcher's container, so it sees the same
node libvirt. Both modes: ready while the domain runs here. A receive-mode launcher turns ready once the
guest has arrived and runs; that it waits to receive is in its domain report (launcher/report.py).

A process per probe period per launcher, on every node, while migrations run there: it imports libvirt and
the readiness rule only (no argparse, no dataclasses, not the launcher's adapter), about half the CPU of a
launcher's start (cmd/launcher.py routes `--probe` here before parsing anything else).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import libvirt

from virtmigrate.launcher.readiness import is_ready


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; the probe's answer is its exit code."""


def probe(mode: str, name: str, *, uri: str = "qemu:///system") -> bool:
    libvirt.registerErrorHandler(_quiet, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False  # libvirt unreachable: not ready
    try:
        try:
            state = int(conn.lookupByName(name).state()[0])
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                return False
            return is_ready(mode, reachable=True, present=False, state=0)
        return is_ready(mode, reachable=True, present=True, state=state)
    finally:
        with contextlib.suppress(libvirt.libvirtError):  # the daemon went away meanwhile: nothing to release
            conn.close()


def probe_args(argv: Sequence[str]) -> tuple[str, str, str]:
    """(mode, domain name, uri) from the launcher's command line, `--flag=value` or `--flag value`; the
    launcher's defaults where absent (argparse would cost the probe as much as libvirt does)."""
    opts = {"mode": "start", "domain-name": "", "uri": "qemu:///system"}
    it = iter(argv)
    for arg in it:
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if key in opts:
            opts[key] = value if eq else next(it, "")
    return opts["mode"], opts["domain-name"], opts["uri"]
