"""The launcher's libvirt adapter: one connection to the node's daemon, lifecycle events into a queue.

Used by holder.py (the `Node` protocol is its seam; unit tests use a fake) and probe.py. Every libvirt
failure leaves this module as virtmigrate.errors.LibvirtError; a missing domain is `None`, not an error.
libvirt's default event loop runs in a daemon thread so lifecycle events (and keepalives) arrive.
"""

from __future__ import annotations

import contextlib
import queue
from dataclasses import dataclass
from typing import Any, Protocol

import libvirt

from virtmigrate.errors import LibvirtError
from virtmigrate.virt import quiet_libvirt, start_event_loop

quiet_libvirt()


class Node(Protocol):
    """The node's libvirt as the launcher sees it."""

    def state(self, name: str) -> tuple[int, int] | None:
        """(virDomainState, reason) of domain `name`, None when it does not exist."""

    def uuid(self, name: str) -> str | None: ...

    def inspect(self, name: str) -> Inspection | None:
        """State, persistence, job and UUID of domain `name` in one look; None when it does not exist."""

    def migrating_out(self, name: str) -> bool:
        """Whether an outgoing migration job runs on the domain."""

    def define_and_start(self, xml: str) -> str:
        """Define the domain (persistently) and start it; returns its UUID."""

    def start(self, name: str) -> None: ...

    def shutdown(self, name: str) -> None: ...

    def destroy(self, name: str) -> None: ...

    def undefine(self, name: str) -> None: ...

    def events(self, name: str, timeout: float) -> list[tuple[int, int]]:
        """Lifecycle (event, detail) pairs of `name` that arrived, waiting up to `timeout` for the first."""

    def reconnect(self) -> None:
        """Open a new connection after the daemon went away (raises LibvirtError while it is down)."""


@dataclass(frozen=True)
class Inspection:
    state: int             # virDomainState
    reason: int            # the state's reason
    persistent: bool
    job_active: bool       # a libvirt job (for us: a migration) runs on the domain
    uuid: str


def _error(e: libvirt.libvirtError, what: str) -> LibvirtError:
    return LibvirtError(f"{what}: {e.get_error_message()}", code=e.get_error_code() or 0)


class LibvirtNode:
    """`Node` over a real libvirt connection (`qemu:///system` inside the node's mount namespace)."""

    def __init__(self, uri: str = "qemu:///system", *, with_events: bool = True) -> None:
        self.uri = uri
        self._queue: queue.Queue[tuple[str, int, int]] = queue.Queue()
        self._with_events = with_events
        if with_events:
            start_event_loop()
        self.conn = self._open()

    def _open(self) -> Any:
        try:
            conn = libvirt.open(self.uri)
            if self._with_events:
                conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)
                conn.setKeepAlive(5, 3)
        except libvirt.libvirtError as e:
            raise _error(e, f"cannot connect to {self.uri}") from e
        return conn

    def reconnect(self) -> None:
        self.close()
        self.conn = self._open()

    def _on_event(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        self._queue.put((dom.name(), event, detail))

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):  # the daemon may be gone; nothing to release
            self.conn.close()

    def _lookup(self, name: str) -> Any | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise _error(e, f"lookup of domain {name}") from e

    def state(self, name: str) -> tuple[int, int] | None:
        dom = self._lookup(name)
        if dom is None:
            return None
        try:
            st, reason = dom.state()
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise _error(e, f"state of domain {name}") from e
        return int(st), int(reason)

    def uuid(self, name: str) -> str | None:
        dom = self._lookup(name)
        return str(dom.UUIDString()) if dom is not None else None

    def inspect(self, name: str) -> Inspection | None:
        dom = self._lookup(name)
        if dom is None:
            return None
        try:
            st, reason = dom.state()
            persistent = bool(dom.isPersistent())
            uuid = str(dom.UUIDString())
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise _error(e, f"inspection of domain {name}") from e
        try:
            job = dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError:
            job = False  # the job ended with the domain; the events tell the rest
        return Inspection(state=int(st), reason=int(reason), persistent=persistent, job_active=job, uuid=uuid)

    def migrating_out(self, name: str) -> bool:
        dom = self._lookup(name)
        if dom is None:
            return False
        try:
            job = dom.jobInfo()[0]
        except libvirt.libvirtError:
            return False  # the job ended with the domain; the events tell the rest
        return bool(job != libvirt.VIR_DOMAIN_JOB_NONE)

    def define_and_start(self, xml: str) -> str:
        try:
            dom = self.conn.defineXML(xml)
            dom.create()
            return str(dom.UUIDString())
        except libvirt.libvirtError as e:
            raise _error(e, "define and start of the domain") from e

    def _call(self, name: str, method: str) -> None:
        dom = self._lookup(name)
        if dom is None:
            return
        try:
            getattr(dom, method)()
        except libvirt.libvirtError as e:
            if e.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                return  # already gone or already in the wanted state
            raise _error(e, f"{method} of domain {name}") from e

    def start(self, name: str) -> None:
        self._call(name, "create")

    def shutdown(self, name: str) -> None:
        self._call(name, "shutdown")

    def destroy(self, name: str) -> None:
        self._call(name, "destroy")

    def undefine(self, name: str) -> None:
        self._call(name, "undefine")

    def events(self, name: str, timeout: float) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        try:
            item = self._queue.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return out
        while True:
            if item[0] == name:
                out.append((item[1], item[2]))
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
