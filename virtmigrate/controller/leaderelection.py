"""Leader election on a coordination.k8s.io/v1 Lease (client-go's tools/leaderelection).

Consumed by the controller's main: only the replica that holds the Lease runs controllers.
Fed by a `LeaseLock` (the Lease through KubeClient, or a fake in unit tests) and the clock.

    acquire   every `retry_period` (x1.2 jitter) try to take the Lease; it can be taken when it
              has no holder, or when its record has not changed for `lease_duration` seconds
              as measured on OUR clock since we first saw that record (no trust in remote clocks)
    lead      on_started_leading(stop_leading) runs in its own thread
    renew     every `retry_period`; if no renewal succeeds for `renew_deadline` seconds, leadership
              is lost: stop_leading is set and on_stopped_leading() called. Each attempt runs on its
              own thread and is given only what is left of the deadline (client-go's renew context):
              a hung connection cannot keep this replica leading past the deadline
    release   on graceful shutdown the leader waits (bounded by `drain_timeout`) for its controllers to
              drain, then empties holderIdentity (leaseDurationSeconds=1), so a successor takes over at
              its next retry instead of after the lease duration — and never while our workers still act

Defaults are client-go's: lease 15 s, renew deadline 10 s, retry 2 s.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from virtmigrate import errors
from virtmigrate.clock import Clock, RealClock
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import LEASES

log = structlog.get_logger("virtmigrate.leaderelection")

JITTER_FACTOR = 1.2  # client-go's JitterFactor for the acquire loop
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class LeaderElectionRecord:
    """The Lease's spec, as client-go's resourcelock.LeaderElectionRecord."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    leader_transitions: int = 0


class LeaseLock(Protocol):
    """The shared record. `get` raises NotFound; `update` raises Conflict when `version` is stale."""

    identity: str

    def get(self) -> tuple[LeaderElectionRecord, str]:
        """The record and its version (the Lease's resourceVersion)."""

    def create(self, record: LeaderElectionRecord) -> str: ...

    def update(self, record: LeaderElectionRecord, version: str) -> str: ...


def decide_can_acquire(observed: LeaderElectionRecord, observed_at: float, now: float, *,
                       identity: str) -> bool:
    """May `identity` write itself as holder? Yes if it holds the lease, if nobody does, or if the
    record has stood unchanged for its lease duration since `observed_at` (our clock)."""
    if observed.holder_identity in ("", identity):
        return True
    return observed_at + observed.lease_duration_seconds <= now


def compute_next_record(observed: LeaderElectionRecord | None, *, identity: str, lease_duration: int,
                        now_wall: str) -> LeaderElectionRecord:
    """The record to write: a renewal keeps acquireTime and the transition count; a take-over
    sets acquireTime and counts one more transition."""
    if observed is None:
        return LeaderElectionRecord(identity, lease_duration, now_wall, now_wall, 0)
    if observed.holder_identity == identity:
        return replace(observed, lease_duration_seconds=lease_duration, renew_time=now_wall)
    return LeaderElectionRecord(identity, lease_duration, now_wall, now_wall,
                                observed.leader_transitions + 1)


@dataclass(frozen=True)
class LeaderElectionConfig:
    lock: LeaseLock
    on_started_leading: Callable[[threading.Event], None]
    on_stopped_leading: Callable[[], None]
    on_new_leader: Callable[[str], None] | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True
    drain_timeout: float = 30.0   # graceful stop: how long the controllers get to drain before the release
    name: str = "virtmigrate-controller"
    clock: Clock = field(default_factory=RealClock)
    rand: random.Random | None = None  # test-only: seeded jitter

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > JITTER_FACTOR * self.retry_period > 0:
            raise errors.ConfigError(
                f"leader election {self.name}: need lease_duration ({self.lease_duration}) > "
                f"renew_deadline ({self.renew_deadline}) > {JITTER_FACTOR} x retry_period ({self.retry_period})")


class LeaderElector:
    def __init__(self, config: LeaderElectionConfig) -> None:
        self.config = config
        self._clock = config.clock
        self._rand = config.rand or random.Random()
        self._identity = config.lock.identity
        self._observed: LeaderElectionRecord | None = None
        self._observed_version = ""
        self._observed_at = 0.0
        self._leading = threading.Event()
        self._reported_leader = ""
        self._log = log.bind(lease=config.name, identity=self._identity)

    def is_leader(self) -> bool:
        return self._leading.is_set()

    def get_leader(self) -> str:
        return self._observed.holder_identity if self._observed else ""

    def run(self, stop: threading.Event) -> None:
        """Acquire, lead until `stop` or lost, then release (if graceful). Blocks; returns after
        on_stopped_leading has run (if leadership was ever acquired)."""
        if not self._acquire(stop):
            return
        stop_leading = threading.Event()
        leader = threading.Thread(target=self.config.on_started_leading, args=(stop_leading,),
                                  name="leading", daemon=True)
        leader.start()
        try:
            self._renew(stop)
        finally:
            self._leading.clear()
            stop_leading.set()
            leader.join(self.config.drain_timeout)  # the workers drain before anyone else may lead
            if leader.is_alive():
                self._log.warning("leader_drain_timeout", timeout_s=self.config.drain_timeout)
            if stop.is_set() and self.config.release_on_cancel and not leader.is_alive():
                self.release()
            self._log.info("leader_stopped", graceful=stop.is_set())
            self.config.on_stopped_leading()

    def _acquire(self, stop: threading.Event) -> bool:
        self._log.info("leader_acquiring")
        while not stop.is_set():
            if self._try_acquire_or_renew():
                self._leading.set()
                self._log.info("leader_acquired")
                return True
            period = self.config.retry_period * (1.0 + self._rand.random() * (JITTER_FACTOR - 1.0))
            self._clock.wait(stop, period)
        return False

    def _renew(self, stop: threading.Event) -> None:
        cfg = self.config
        last_renew = self._clock.now()
        while not stop.is_set():
            if self._clock.wait(stop, cfg.retry_period):
                return
            left = cfg.renew_deadline - (self._clock.now() - last_renew)
            if self._attempt_within(left, stop):
                last_renew = self._clock.now()
                continue
            if self._clock.now() - last_renew >= cfg.renew_deadline:
                self._log.warning("leader_lost", since_renew=self._clock.now() - last_renew)
                return

    def _attempt_within(self, seconds: float, stop: threading.Event) -> bool:
        """One renewal, given at most `seconds` (our clock). An attempt still running then counts as
        failed; its thread is left to finish on its own (a late write only renews a Lease we no longer
        act on: followers wait one more lease duration, never two leaders)."""
        done = threading.Event()
        ok: list[bool] = []

        def attempt() -> None:
            try:
                ok.append(self._try_acquire_or_renew())
            finally:
                done.set()

        threading.Thread(target=attempt, name="lease-renew", daemon=True).start()
        if not self._clock.wait(done, max(seconds, 0.0)) and not done.is_set():
            self._log.warning("lease_renew_timed_out", timeout_s=round(seconds, 3))
            return False
        return bool(ok and ok[0])

    def _try_acquire_or_renew(self) -> bool:
        lock = self.config.lock
        now_wall = self._clock.wall().strftime(_MICROTIME)
        lease_s = int(self.config.lease_duration)
        try:
            current, version = lock.get()
        except errors.NotFound:
            record = compute_next_record(None, identity=self._identity, lease_duration=lease_s,
                                         now_wall=now_wall)
            try:
                version = lock.create(record)
            except errors.KubeError as e:
                self._log.debug("lease_create_failed", error=str(e))
                return False  # someone else created it first: observe it next round
            self._observe(record, version)
            return True
        except errors.KubeError as e:
            self._log.debug("lease_get_failed", error=str(e))
            return False  # transient: the renew deadline decides when this becomes a loss
        if current != self._observed or version != self._observed_version:
            self._observe(current, version)
        if not decide_can_acquire(current, self._observed_at, self._clock.now(), identity=self._identity):
            return False  # held by someone else whose lease has not expired on our clock
        record = compute_next_record(current, identity=self._identity, lease_duration=lease_s,
                                     now_wall=now_wall)
        try:
            new_version = lock.update(record, version)
        except errors.KubeError as e:
            self._log.debug("lease_update_failed", error=str(e))
            return False  # Conflict: another candidate won this round
        self._observe(record, new_version)
        return True

    def _observe(self, record: LeaderElectionRecord, version: str) -> None:
        self._observed, self._observed_version = record, version
        self._observed_at = self._clock.now()
        holder = record.holder_identity
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            self._log.info("leader_observed", leader=holder)
            if self.config.on_new_leader is not None:
                self.config.on_new_leader(holder)

    def release(self) -> bool:
        """Give the lease up if we hold it (client-go's release): empty holder, 1 s duration."""
        if self._observed is None or self._observed.holder_identity != self._identity:
            return False
        now_wall = self._clock.wall().strftime(_MICROTIME)
        record = replace(self._observed, holder_identity="", lease_duration_seconds=1,
                         acquire_time=now_wall, renew_time=now_wall)
        try:
            version = self.config.lock.update(record, self._observed_version)
        except errors.KubeError as e:
            self._log.warning("lease_release_failed", error=str(e))
            return False
        self._observe(record, version)
        self._log.info("leader_released")
        return True


class KubeLeaseLock:
    """A `LeaseLock` on a coordination.k8s.io/v1 Lease."""

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity

    def get(self) -> tuple[LeaderElectionRecord, str]:
        lease = self.client.get(LEASES, self.name, self.namespace)
        spec = lease.get("spec") or {}
        return (LeaderElectionRecord(spec.get("holderIdentity") or "",
                                     int(spec.get("leaseDurationSeconds") or 0),
                                     spec.get("acquireTime") or "", spec.get("renewTime") or "",
                                     int(spec.get("leaseTransitions") or 0)),
                str(lease["metadata"]["resourceVersion"]))

    def _lease(self, record: LeaderElectionRecord, version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            meta["resourceVersion"] = version
        spec: dict[str, Any] = {"holderIdentity": record.holder_identity,
                                "leaseDurationSeconds": record.lease_duration_seconds,
                                "leaseTransitions": record.leader_transitions}
        if record.acquire_time:
            spec["acquireTime"] = record.acquire_time
        if record.renew_time:
            spec["renewTime"] = record.renew_time
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def create(self, record: LeaderElectionRecord) -> str:
        out = self.client.create(LEASES, self._lease(record, None), self.namespace)
        return str(out["metadata"]["resourceVersion"])

    def update(self, record: LeaderElectionRecord, version: str) -> str:
        out = self.client.replace(LEASES, self._lease(record, version))
        return str(out["metadata"]["resourceVersion"])
