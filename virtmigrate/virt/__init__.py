"""libvirt process plumbing shared by the agent and the launcher (the two programs that talk to libvirt)."""

from virtmigrate.virt.events import quiet_libvirt, start_event_loop

__all__ = ["quiet_libvirt", "start_event_loop"]
