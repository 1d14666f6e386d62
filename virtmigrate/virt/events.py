"""libvirt's default event loop, started once per process, and its error printing silenced.

libvirt needs an event loop registered before the first connection opens for domain events and
keepalives; both the agent and the launcher run it in a daemon thread.
"""

from __future__ import annotations

import threading

import libvirt

_lock = threading.Lock()
_started = False


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (idempotent)."""
    global _started
    with _lock:
        if _started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _started = True


def quiet_libvirt() -> None:
    """Errors are raised as exceptions; stop libvirt from also printing them to stderr."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
