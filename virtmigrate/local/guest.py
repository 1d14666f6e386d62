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
from xml.sax.saxutils import escape, quoteattr

_REPO = Path(__file__).resolve().parent.parent.parent
MODES = ("idle", "rewrite")


def guest_kernel() -> Path:
    """The guest kernel's path, built (with binutils, into the cache) when missing or stale."""
    out = subprocess.run([str(_REPO / "hack" / "build-guest.sh")], check=True, capture_output=True, text=True,
                         env={**os.environ}, timeout=120)
    return Path(out.stdout.strip().splitlines()[-1])


def serial_log_path(name: str) -> str:
    """Where the guest's serial output goes, as seen inside a libvirt host."""
    return f"/var/log/libvirt/qemu/{name}-serial.log"


@dataclass(frozen=True)
class GuestSpec:
    """What varies between test guests."""

    name: str
    uuid: str
    kernel: Path
    memory_mib: int = 64
    mode: str = "idle"  # "idle" (heartbeat) or "rewrite" (keeps dirtying all RAM)


def domain_xml(spec: GuestSpec) -> str:
    """The libvirt domain XML: 1 vCPU, type qemu (TCG), kernel + cmdline, serial to a file, no devices
    beyond that (no disk, no NIC, memballoon none, usb none)."""
    if spec.mode not in MODES:
        raise ValueError(f"guest mode {spec.mode!r} is not one of {', '.join(MODES)}")
    if spec.memory_mib < 16:
        raise ValueError(f"guest memory {spec.memory_mib} MiB is below the 16 MiB the kernel needs")
    return f"""<domain type='qemu'>
  <name>{escape(spec.name)}</name>
  <uuid>{escape(spec.uuid)}</uuid>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <currentMemory unit='MiB'>{spec.memory_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(spec.kernel))}</kernel>
    <cmdline>{escape("mode=" + spec.mode)}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'>
      <source path={quoteattr(serial_log_path(spec.name))}/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""
