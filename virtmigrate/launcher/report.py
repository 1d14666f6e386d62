"""The launcher's report of its domain on its own pod (annotation virtmigrate.kubevirt.io/domain).

Fed by holder.py: every observation becomes `DomainFacts` (`compute_facts`, pure); `FactsPublisher.offer`
keeps the latest and a background thread patches the pod when the facts changed — and every
`JOB_REFRESH_S` while a migration job runs, so a reader can tell fresh facts from old ones. Consumed by the
controllers through their pod caches (virtmigrate.api.domainfacts is the contract).

A publisher that cannot reach the API logs and keeps the latest facts: the next change retries. The
launcher never waits for the API: holding the guest comes first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from virtmigrate.api.domainfacts import ANNOTATION_DOMAIN, DomainFacts, DomainState, Job, LauncherMode
from virtmigrate.launcher.decide import PAUSED_MIGRATION
from virtmigrate.launcher.readiness import CRASHED, PAUSED, RUNNING, SHUTOFF
from virtmigrate.sender import LatestSender

if TYPE_CHECKING:
    from virtmigrate.launcher.domain import Inspection

JOB_REFRESH_S = 2.0          # while a job runs, report at least this often
_STATES = {RUNNING: DomainState.RUNNING, PAUSED: DomainState.PAUSED, SHUTOFF: DomainState.SHUTOFF,
           CRASHED: DomainState.CRASHED}


def compute_facts(seen: Inspection | None, *, reachable: bool, mode: LauncherMode, seq: int,
                  observed: str) -> DomainFacts:
    """The report for one observation (pure). A job on a domain this launcher waits for is incoming; on
    a domain it holds, outgoing. An incoming domain paused for migration counts as incoming without a job."""
    if not reachable:
        return DomainFacts(reachable=False, mode=mode, seq=seq, observed=observed)
    if seen is None:
        return DomainFacts(reachable=True, mode=mode, seq=seq, observed=observed)
    job = Job.NONE
    if seen.job_active:
        job = Job.IN if mode == LauncherMode.WAITING else Job.OUT
    elif mode == LauncherMode.WAITING and seen.state == PAUSED and seen.reason == PAUSED_MIGRATION:
        job = Job.IN
    return DomainFacts(reachable=True, present=True, state=_STATES.get(seen.state, DomainState.OTHER),
                       persistent=seen.persistent, job=job, uuid=seen.uuid, mode=mode, seq=seq,
                       observed=observed)


def should_publish(new: DomainFacts, last_sent: DomainFacts | None, *, since_sent_s: float) -> bool:
    """Publish on any change, and while a job runs at least every JOB_REFRESH_S (pure)."""
    if not new.same_observation(last_sent):
        return True
    return new.job != Job.NONE and since_sent_s >= JOB_REFRESH_S


class Patcher:
    """What the publisher needs of the API: patch one pod's annotation (virtmigrate.kube.KubeClient)."""

    def __init__(self, client: Any, pod: str, namespace: str) -> None:
        from virtmigrate.kube.resources import PODS

        self._client, self._pods, self._pod, self._ns = client, PODS, pod, namespace

    def __call__(self, value: str) -> None:
        self._client.patch(self._pods, self._pod, {"metadata": {"annotations": {ANNOTATION_DOMAIN: value}}},
                           self._ns)


class FactsPublisher:
    """Sends the latest facts from its own thread (virtmigrate.sender.LatestSender). `connect` builds a
    `Patcher` (on that thread: importing the API client must not delay the launcher's start). `flush` waits
    (bounded) until the latest facts are sent — used once before the launcher exits, so the last word is on the
    pod. A failed patch is tried again (a failing API is not spun on)."""

    def __init__(self, connect: Callable[[], Callable[[str], None]], *, now: Callable[[], float], log: Any) -> None:
        def connect_facts() -> Callable[[DomainFacts], None]:
            patch = connect()
            return lambda facts: patch(facts.to_annotation())

        self._sender: LatestSender[DomainFacts] = LatestSender(
            connect_facts, now=now, log=log, name="domain-report", disabled="domain_report_disabled",
            failed="domain_report_failed", retry_s=0.5)
        self._sender.start()

    def offer(self, facts: DomainFacts) -> None:
        self._sender.offer(facts, wanted=lambda last, since_s: should_publish(facts, last, since_sent_s=since_s))

    def flush(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (or `timeout_s`); True when the latest facts were sent."""
        return self._sender.flush(timeout_s)

    def stop(self) -> None:
        self._sender.stop()
