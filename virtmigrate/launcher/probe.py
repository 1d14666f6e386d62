"""The launcher's readiness probe (`virtmigrate-launcher --probe`): exit 0 iff the pod should be Ready.

Run by the node runner (or a kubelet) as an exec probe in the launcher's container, so it sees the same
node libvirt. Both modes: ready while the domain runs here. A receive-mode launcher turns ready once the
guest has arrived and runs; that it waits to receive is in its domain report (launcher/report.py).
"""

from __future__ import annotations

from virtmigrate.errors import LibvirtError
from virtmigrate.launcher.domain import LibvirtNode
from virtmigrate.launcher.readiness import is_ready


def probe(mode: str, name: str, *, uri: str = "qemu:///system") -> bool:
    try:
        node = LibvirtNode(uri, with_events=False)
    except LibvirtError:
        return False
    try:
        st = node.state(name)
    except LibvirtError:
        return False
    finally:
        node.close()
    return is_ready(mode, reachable=True, present=st is not None, state=st[0] if st else 0)
