"""The libvirt hosts the agent's tests (and the local cluster) run on: idempotent up, clean down."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from virtmigrate.local.guest import GuestSpec, domain_xml, guest_kernel
from virtmigrate.local.libvirthosts import LibvirtHosts, mount_ns

pytestmark = [pytest.mark.integration, pytest.mark.libvirt, pytest.mark.timeout(120)]


def _pids_in(ns: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and mount_ns(int(p.name)) == ns]


def test_up_is_idempotent_and_down_leaves_nothing_behind(tmp_path: Path) -> None:
    hs = LibvirtHosts(tmp_path, 2, first_address=60)
    try:
        hosts = hs.up()
        pids = [hs.pid(h) for h in hosts]
        assert hs.up() == hosts and [hs.pid(h) for h in hosts] == pids  # nothing restarted
        assert len({h.host_uuid for h in hosts}) == 2 and len({h.tcp_port for h in hosts}) == 2
        # qemu:///system inside a host's namespace reaches that host's own daemon
        sysinfo = hs.run(0, ["virsh", "-c", "qemu:///system", "capabilities"]).stdout
        assert hosts[0].host_uuid in sysinfo
        xml = tmp_path / "g.xml"
        xml.write_text(domain_xml(GuestSpec("leftover", str(uuid.uuid4()), guest_kernel(), 32, "idle")))
        hs.virsh(1, "define", str(xml))
        hs.virsh(1, "start", "leftover")
        namespaces = {mount_ns(p) for p in pids if p is not None}
        assert len(namespaces) == 2 and mount_ns(os.getpid()) not in namespaces
    finally:
        hs.down()
    for ns in namespaces:
        assert _pids_in(str(ns)) == []  # no daemon, no QEMU, no nsenter'd process: so no private mounts
    assert all(hs.pid(h) is None for h in hosts)
    hs.up()
    try:
        assert "leftover" not in hs.virsh(1, "list", "--all", "--name").stdout  # no domain came back
    finally:
        hs.down()
