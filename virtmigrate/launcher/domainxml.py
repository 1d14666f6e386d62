"""The domain XML of a VM's guest (pure), from the launcher's command line.

A diskless-or-one-disk TCG guest (`type='qemu'`: the machines running the local cluster have no
hardware virtualisation), booted from a kernel with a command line or from a disk, with its serial
port written to /var/log/libvirt/qemu/<name>-serial.log — the same place as virtmigrate.local.guest,
which resolves inside each node to that node's own folder, so the file shows where the guest runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from virtmigrate.errors import ValidationError


# xml.sax.saxutils' escape and quoteattr, which import urllib.request (with http.client, email, ssl, tempfile):
# a quarter of the launcher's start, on the path to the target's first report.
def escape(data: str) -> str:
    return data.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def quoteattr(data: str) -> str:
    data = escape(data).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in data:
        return f'"{data}"'
    if "'" not in data:
        return f"'{data}'"
    return '"' + data.replace('"', "&quot;") + '"'


@dataclass(frozen=True)
class GuestConfig:
    name: str
    uuid: str
    memory_bytes: int
    cpus: int = 1
    kernel: str = ""
    cmdline: str = ""
    disk: str = ""


def serial_log_path(name: str) -> str:
    return f"/var/log/libvirt/qemu/{name}-serial.log"


def domain_xml(g: GuestConfig) -> str:
    """The libvirt domain XML for `g` (raises ValidationError when it cannot boot)."""
    if not g.kernel and not g.disk:
        raise ValidationError("the VM has neither spec.kernel nor spec.disk: set one so the guest can boot",
                              field="spec.kernel")
    if g.memory_bytes < 16 << 20:
        raise ValidationError(f"spec.memory {g.memory_bytes} bytes is below the 16Mi a guest needs",
                              field="spec.memory")
    boot = ""
    if g.kernel:
        boot = f"\n    <kernel>{escape(g.kernel)}</kernel>"
        if g.cmdline:
            boot += f"\n    <cmdline>{escape(g.cmdline)}</cmdline>"
    else:
        boot = "\n    <boot dev='hd'/>"
    disk = ""
    if g.disk:
        disk = (f"\n    <disk type='file' device='disk'><driver name='qemu'/>"
                f"<source file={quoteattr(g.disk)}/><target dev='vda' bus='virtio'/></disk>")
    return f"""<domain type='qemu'>
  <name>{escape(g.name)}</name>
  <uuid>{escape(g.uuid)}</uuid>
  <memory unit='KiB'>{g.memory_bytes // 1024}</memory>
  <currentMemory unit='KiB'>{g.memory_bytes // 1024}</currentMemory>
  <vcpu>{g.cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>{boot}
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>{disk}
    <serial type='file'>
      <source path={quoteattr(serial_log_path(g.name))}/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""
