"""The launcher's loop: start or receive the domain, hold it, and end with an Outcome.

Called by virtmigrate/cmd/launcher.py with a `Node` (domain.LibvirtNode, or a fake in unit tests), the
guest config and a `stop` event set on SIGTERM. Each step observes (events + state poll), decides with
decide.py, and acts; the wait between steps is the node's event wait, bounded by `poll_s`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from virtmigrate.api.domainfacts import DomainFacts, LauncherMode
from virtmigrate.clock import Clock
from virtmigrate.errors import LibvirtError, ValidationError
from virtmigrate.jsonlog import JsonLogger
from virtmigrate.launcher import decide
from virtmigrate.launcher.domain import Inspection, Node
from virtmigrate.launcher.domainxml import GuestConfig, domain_xml
from virtmigrate.launcher.exitcodes import Outcome, Reason
from virtmigrate.launcher.report import compute_facts

log = JsonLogger(logger="launcher")  # JSON lines on stderr; nothing to import (virtmigrate.jsonlog)


@dataclass(frozen=True)
class LauncherConfig:
    mode: str                      # "start" or "receive"
    guest: GuestConfig
    shutdown_timeout_s: float = 5.0
    receive_timeout_s: float = 600.0
    poll_s: float = 0.5
    reconnect_timeout_s: float = 60.0  # how long a lost libvirt connection may take to come back


class Launcher:
    def __init__(self, node: Node, cfg: LauncherConfig, *, clock: Clock, stop: threading.Event,
                 report: Callable[[DomainFacts], None] | None = None) -> None:
        self.node = node
        self.cfg = cfg
        self.clock = clock
        self.stop = stop
        self.report = report     # the pod's domain report (report.FactsPublisher.offer); None: not reported
        self.seq = 0             # reports made by this process (DomainFacts.seq)
        self.name = cfg.guest.name
        self.log = log.bind(domain=self.name, mode=cfg.mode)

    def _publish(self, seen: Inspection | None, *, reachable: bool, mode: LauncherMode) -> None:
        if self.report is None:
            return
        self.seq += 1
        observed = self.clock.wall().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.report(compute_facts(seen, reachable=reachable, mode=mode, seq=self.seq, observed=observed))

    def run(self) -> Outcome:
        try:
            outcome = self._start() if self.cfg.mode == "start" else self._receive()
            return outcome or self._hold()
        except LibvirtError as e:
            self.log.error("libvirt_failed", error=str(e))
            return Outcome(Reason.INTERNAL, str(e))

    def _observe(self, events: list[tuple[int, int]], migrating_before: bool, *,
                 mode: LauncherMode) -> decide.Observation:
        seen = self.node.inspect(self.name)
        self._publish(seen, reachable=True, mode=mode)
        migrating = seen is not None and seen.job_active
        return decide.Observation(name=self.name, present=seen is not None, state=seen.state if seen else 0,
                                  reason=seen.reason if seen else 0, events=tuple(events),
                                  migrating_out=migrating or (migrating_before and seen is None),
                                  sigterm=self.stop.is_set(), persistent=seen is not None and seen.persistent,
                                  job=migrating)

    def _start(self) -> Outcome | None:
        st = self.node.state(self.name)
        if st is not None and st[0] in (decide.RUNNING, decide.PAUSED):
            self.log.info("domain_adopted", state=st[0])  # a launcher before us started it on this node
            return None
        if st is not None:
            self.node.undefine(self.name)  # a stale, stopped definition (perhaps of an older VM of this name)
        try:
            xml = domain_xml(self.cfg.guest)
        except ValidationError as e:
            return Outcome(Reason.START_FAILED, str(e))
        try:
            uuid = self.node.define_and_start(xml)
        except LibvirtError as e:
            return Outcome(Reason.START_FAILED, f"domain {self.name}: {e}")
        self.log.info("domain_started", uuid=uuid)
        return None

    def _receive(self) -> Outcome | None:
        t0 = self.clock.now()
        self.log.info("receiving", timeout_s=self.cfg.receive_timeout_s)
        stop_seen: float | None = None  # when the SIGTERM was first seen
        while True:
            try:
                # Observe first: the first report ("waiting, libvirt answers") is the migration's go-ahead.
                o = self._observe([], False, mode=LauncherMode.WAITING)
                d = decide.decide_receive(o, waited_s=self.clock.now() - t0, timeout_s=self.cfg.receive_timeout_s)
                if d.action is decide.Action.HOLD:
                    self.log.info("domain_received", uuid=self.node.uuid(self.name))
                    return None
                if d.action is decide.Action.EXIT:
                    assert d.outcome is not None
                    left = decide.Leftover.NONE
                    if o.sigterm:
                        stop_seen = self.clock.now() if stop_seen is None else stop_seen
                        left = decide.receive_leftover(o, stopping_for_s=self.clock.now() - stop_seen)
                    if left is decide.Leftover.DESTROY:
                        refused = self._destroy_leftover(o)
                        if refused is not None:
                            return refused
                    if left is not decide.Leftover.WAIT:
                        return d.outcome
                self.node.events(self.name, self.cfg.poll_s)
            except LibvirtError as e:
                # The daemon went away mid-migration (QEMU lives on): reconnect, as when holding a guest, and
                # look again — what the restarted daemon kept of the incoming domain is for this launcher to see.
                self._publish(None, reachable=False, mode=LauncherMode.WAITING)
                gave_up = self._reconnect(e)
                if gave_up is not None:
                    return gave_up

    def _destroy_leftover(self, o: decide.Observation) -> Outcome | None:
        """Destroy the paused incoming copy receive_leftover gave up on; an Outcome when libvirt refuses
        while its daemon still answers (a lost daemon raises, as any libvirt call, to reconnect)."""
        try:
            self.node.destroy(self.name)
        except LibvirtError as e:
            seen = self.node.inspect(self.name)  # raises in turn when the daemon is gone: reconnect, look again
            if seen is None or seen.state != decide.PAUSED:
                return None  # gone or changed meanwhile: the next look decides
            self.log.error("incoming_leftover_refused", state=seen.state, reason=seen.reason, error=str(e))
            self._publish(seen, reachable=True, mode=LauncherMode.EXITING)
            return decide.leftover_refused(self.name, seen.reason, str(e))
        self.log.warning("incoming_leftover_destroyed", state=o.state)
        self._publish(self.node.inspect(self.name), reachable=True, mode=LauncherMode.EXITING)
        return None

    def _reconnect(self, error: LibvirtError) -> Outcome | None:
        """The daemon went away (QEMU keeps running without it): reconnect, or give up after the timeout."""
        self.log.warning("libvirt_lost", error=str(error))
        deadline = self.clock.now() + self.cfg.reconnect_timeout_s
        while True:
            try:
                self.node.reconnect()
                self.log.info("libvirt_reconnected")
                return None
            except LibvirtError as e:
                if self.clock.now() >= deadline:
                    took = f"{self.cfg.reconnect_timeout_s:.0f}s"
                    return Outcome(Reason.LIBVIRT_UNREACHABLE,
                                   f"the node's libvirt did not come back within {took}: {e}")
            self.clock.wait(threading.Event(), 0.5)

    def _hold(self) -> Outcome:
        migrating = False
        self.log.info("holding")
        while True:
            try:
                events = self.node.events(self.name, self.cfg.poll_s)
                o = self._observe(events, migrating, mode=LauncherMode.HOLD)
            except LibvirtError as e:
                self._publish(None, reachable=False, mode=LauncherMode.HOLD)
                gave_up = self._reconnect(e)
                if gave_up is not None:
                    return gave_up
                continue
            migrating = o.migrating_out
            d = decide.decide_hold(o)
            if d.action is decide.Action.EXIT:
                assert d.outcome is not None
                self.log.info("domain_gone", reason=d.outcome.reason.value, message=d.outcome.message)
                if decide.migrated_definition_left(o):
                    self._undefine_migrated()
                self._publish(self.node.inspect(self.name), reachable=True, mode=LauncherMode.EXITING)
                return d.outcome
            if d.action is decide.Action.SHUT_DOWN:
                return self._shut_down()

    def _undefine_migrated(self) -> None:
        """decide.migrated_definition_left: finish the migration's own last step on this node."""
        try:
            self.node.undefine(self.name)
        except LibvirtError as e:  # gone meanwhile (the agent's verification undefined it), or libvirt refused
            self.log.warning("migrated_definition_kept", error=str(e))
            return
        self.log.warning("migrated_definition_undefined", why="the guest left by live migration and the job's "
                         "last step (the source's undefine) never ran")

    def _shut_down(self) -> Outcome:
        """ACPI shutdown, destroy after the timeout, then undefine: the guest is gone from this node."""
        self.log.info("shutting_down", timeout_s=self.cfg.shutdown_timeout_s)
        self.node.shutdown(self.name)
        deadline = self.clock.now() + self.cfg.shutdown_timeout_s
        how = "shut down"
        while True:
            st = self.node.state(self.name)
            if st is None or st[0] == decide.SHUTOFF:
                break
            if self.clock.now() >= deadline:
                self.node.destroy(self.name)
                how = f"destroyed after {self.cfg.shutdown_timeout_s:.0f}s without an ACPI shutdown"
                break
            self.node.events(self.name, min(self.cfg.poll_s, 0.2))
        self.node.undefine(self.name)
        self._publish(None, reachable=True, mode=LauncherMode.EXITING)
        return Outcome(Reason.STOPPED_ON_REQUEST, f"domain {self.name} {how} on request")
