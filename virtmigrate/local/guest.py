"""Domain XML for the test guest (hack/guest): a diskless TCG guest booted from our tiny kernel.

Fed the kernel built by hack/build-guest.sh (`guest_kernel()` builds it if needed); consumed by the
agent's integration tests and benchmark and by the local cluster's launcher. The guest fills its RAM with
pseudo-random data and then idles with a once-a-second serial heartbeat (`mode="idle"`) or keeps
rewriting all of its RAM (`mode="rewrite"`). Its serial port writes to `serial_log_path(name)` under
/var/log/libvirt/qemu/, which resolves inside each libvirt host to that host's own folder.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from virtmigrate.launcher.domainxml import GuestConfig, serial_log_path
from virtmigrate.launcher.domainxml import domain_xml as _vm_domain_xml

_REPO = Path(__file__).resolve().parent.parent.parent
MODES = ("idle", "rewrite")


def guest_kernel() -> Path:
    """The guest kernel's path, built (with binutils, into the cache) when missing or stale."""
    out = subprocess.run([str(_REPO / "hack" / "build-guest.sh")], check=True, capture_output=True, text=True,
                         env={**os.environ}, timeout=120)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class GuestSpec:
    name: str
    uuid: str
    kernel: Path
    memory_mib: int = 64
    mode: str = "idle"  # "idle" (heartbeat) or "rewrite" (keeps dirtying all RAM)


def domain_xml(spec: GuestSpec) -> str:
    """The libvirt domain XML (the launcher's, for a VM booting this kernel): 1 vCPU, type qemu (TCG),
    kernel + cmdline, serial to `serial_log_path(name)`, no disk, no NIC, memballoon none, usb none."""
    if spec.mode not in MODES:
        raise ValueError(f"guest mode {spec.mode!r} is not one of {', '.join(MODES)}")
    return _vm_domain_xml(GuestConfig(name=spec.name, uuid=spec.uuid, memory_bytes=spec.memory_mib << 20,
                                      kernel=str(spec.kernel), cmdline="mode=" + spec.mode))


__all__ = ["MODES", "GuestSpec", "domain_xml", "guest_kernel", "serial_log_path"]
