"""The agent's go-ahead, for an agent started while the target launcher starts (--await-target-uid).

With the early start (controller flag --agent-early-start, off by default: README) the controller creates the
agent pod as soon as the target launcher pod is bound (phase Scheduled), so that
the agent's own start (process, imports, both libvirt connections) overlaps the target launcher's, which is
on the critical path anyway. The agent then starts the job only once its Migration says the target is ready:
`status.phase` TargetReady (the controller writes it after the target launcher reported, from its node's
libvirt, that it waits for the guest) or Running. Until then nothing has touched the guest, so any other end
(the Migration failed, cancelled, deleted or replaced by one of the same name) stops the agent with the guest
where it was.

`verdict` is the pure decision; `await_target` reads the Migration (GET, then a watch of that one object)
until the verdict is not WAIT, a cancel signal arrives, or its deadline passes.

When the job has ended, `write_outcome` puts the agent's claim on the Migration (status.agentOutcome: the exit
code it is about to exit with and its termination message), so the controller need not wait for the pod's exit
to travel through the kubelet (a kubelet notices a container's end at its next relist, up to a second later).
It is a claim like the exit code: the controller checks it against the nodes' reports before it decides.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, cast

from virtmigrate.agent.monitor import Cancel
from virtmigrate.agent.result import Result
from virtmigrate.api.exitcodes import ExitCode
from virtmigrate.clock import Clock

if TYPE_CHECKING:
    from virtmigrate.kube import KubeClient
    from virtmigrate.kube.client import WatchEvent

JSON = dict[str, Any]
GO_PHASES = frozenset({"TargetReady", "Running"})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
RETRY_S = 0.5     # after an API error, before reading again
WATCH_S = 60      # one watch request's server-side timeout
FORBIDDEN_GRACE_S = 30.0  # a 403 this long is the RBAC's answer, not a restarted API server's first moments


class Verdict(enum.Enum):
    GO = "go"        # the target is ready: start the job
    WAIT = "wait"    # not yet
    STOP = "stop"    # it never will be: exit, the guest untouched


def verdict(migration: JSON | None, uid: str, name: str) -> tuple[Verdict, str]:
    """What the Migration object (None: not found) says to an agent created for the Migration with `uid`."""
    if migration is None:
        return Verdict.STOP, f"Migration {name!r} was deleted before its target was ready"
    meta = migration.get("metadata") or {}
    if meta.get("uid") != uid:
        return Verdict.STOP, f"Migration {name!r} was replaced (uid {meta.get('uid')}, this agent's is {uid})"
    if meta.get("deletionTimestamp"):
        return Verdict.STOP, f"Migration {name!r} was deleted (cancelled) before its target was ready"
    status = migration.get("status") or {}
    phase = str(status.get("phase") or "")
    if phase in GO_PHASES:
        return Verdict.GO, f"Migration {name!r} is {phase}"
    if phase in TERMINAL_PHASES:
        return Verdict.STOP, (f"Migration {name!r} ended {phase} before its target was ready: "
                              f"{status.get('reason') or ''} {status.get('message') or ''}".rstrip())
    return Verdict.WAIT, f"Migration {name!r} is {phase or 'new'}"


def await_target(client: Callable[[], KubeClient], name: str, namespace: str, uid: str, *, cancel: Cancel,
                 clock: Clock, timeout_s: float, log: Any) -> Result | None:
    """None once the target is ready (start the job); else the Result to exit with (the guest untouched)."""
    from virtmigrate import errors
    from virtmigrate.kube.resources import MIGRATIONS

    deadline = clock.now() + timeout_s
    untouched = "; the guest was not touched"
    kube: KubeClient | None = None
    forbidden_since: float | None = None
    while True:
        if cancel.signal_name:
            return Result(ExitCode.CANCELLED, f"{cancel.signal_name} while waiting for the target{untouched}")
        if clock.now() >= deadline:
            return Result(ExitCode.CANCELLED, f"the target of Migration {name!r} was not ready within "
                                              f"{int(timeout_s)}s{untouched}")
        try:
            kube = kube or client()
            try:
                obj: JSON | None = kube.get(MIGRATIONS, name, namespace)
            except errors.NotFound:
                obj = None
            v, why = verdict(obj, uid, name)
            if v == Verdict.WAIT:
                assert obj is not None
                v, why = _watch(kube, obj, uid, name, namespace, cancel,
                                int(min(WATCH_S, max(deadline - clock.now(), 1))))
        except errors.Gone:
            continue  # the version read is too old to watch from: read again
        except errors.Forbidden as e:
            # A restarted API server denies for a moment, until its RBAC caches are filled: look again, bounded.
            forbidden_since = clock.now() if forbidden_since is None else forbidden_since
            if clock.now() - forbidden_since >= FORBIDDEN_GRACE_S:
                return Result(ExitCode.MIGRATION_FAILED, f"the agent may not read Migration {name!r} ({e}): its "
                              "ServiceAccount needs get and watch on migrations (ClusterRole virtmigrate-agent in "
                              f"manifests/rbac.yaml){untouched}")
            log.warning("await_target_forbidden", error=str(e))
            clock.wait(cancel.wake, RETRY_S)
            continue
        except errors.ConfigError as e:
            return Result(ExitCode.INVALID_ARGUMENTS, f"no API access to wait for the target of Migration "
                                                      f"{name!r}: {e}{untouched}")
        except (errors.VirtMigrateError, OSError) as e:
            log.warning("await_target_retry", error=str(e))
            clock.wait(cancel.wake, RETRY_S)
            continue
        forbidden_since = None  # read and watched: a later 403 starts a grace of its own
        if v == Verdict.GO:
            log.info("target_ready", why=why)
            return None
        if v == Verdict.STOP:
            return Result(ExitCode.CANCELLED, why + untouched)


def _watch(kube: KubeClient, obj: JSON, uid: str, name: str, namespace: str, cancel: Cancel,
           timeout_s: int) -> tuple[Verdict, str]:
    """Watch the one Migration from the version read; WAIT when the watch ends without a decision."""
    from virtmigrate.kube.resources import MIGRATIONS

    w = kube.open_watch(MIGRATIONS, namespace, field_selector=f"metadata.name={name}",
                        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
                        timeout_seconds=timeout_s, allow_bookmarks=False)
    stopped = threading.Event()

    def stop_on_cancel() -> None:  # a signal only sets `cancel`: end the blocked read for it
        while not stopped.is_set():
            if cancel.wake.wait(0.5) and cancel.signal_name:
                w.stop()
                return

    threading.Thread(target=stop_on_cancel, name="gate-cancel", daemon=True).start()
    events = cast("Generator[WatchEvent, None, None]", iter(w))  # Watch.__iter__ is a generator
    try:
        for event in events:
            if event.type == "DELETED":
                return verdict(None, uid, name)
            if event.type in ("ADDED", "MODIFIED"):
                v, why = verdict(event.object, uid, name)
                if v != Verdict.WAIT:
                    return v, why
    finally:
        stopped.set()
        events.close()  # ends the request: a watch connection is never reused
    return Verdict.WAIT, f"Migration {name!r}: watch ended"


def write_outcome(kube: KubeClient, name: str, namespace: str, exit_code: int, termination_message: str, *,
                  log: Any) -> bool:
    """Set status.agentOutcome (the admission policy lets the agent set it once); False when refused or the
    API did not answer — the pod's exit code then carries the same claim."""
    from virtmigrate import errors
    from virtmigrate.kube.resources import MIGRATIONS

    try:
        kube.patch(MIGRATIONS, name, {"status": {"agentOutcome": {"exitCode": exit_code,
                                                                  "terminationMessage": termination_message}}},
                   namespace, subresource="status")
    except (errors.VirtMigrateError, OSError) as e:
        log.warning("outcome_not_written", error=str(e))
        return False
    return True
