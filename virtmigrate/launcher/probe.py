"""The launcher's readiness probe (`virtmigrate-launcher --probe`): exit 0 iff the pod should be Ready.

Run by the node runner (or a kubelet) as an exec probe in the launcher's container, so it sees the same
node libvirt. Start mode: ready while the domain runs. Receive mode: ready while libvirt answers and the
domain is absent (waiting for it), arriving or running — the migration controller's cue that the target
can take the guest.
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
