"""The runner of one node: registers the Node, watches the pods bound to it and drives their workers.

Fed by the API (a LIST then WATCH of pods with fieldSelector spec.nodeName=<node>, relisting after a 410
or a broken stream); consumed by __main__.py, which runs one NodeRunner per node in one process.
Two threads per node: the watch thread turns events into a queue, the sync thread (the only one that
touches pod workers) applies them and calls every worker's `sync` every `sync_period_s`, and heartbeats
the Node's Ready condition and its Lease.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from typing import Any

import structlog

from virtmigrate import errors
from virtmigrate.kube.client import WatchEvent
from virtmigrate.kube.resources import PODS
from virtmigrate.local.noderunner import container as ctr
from virtmigrate.local.noderunner import node as nodeobj
from virtmigrate.local.noderunner.podworker import PodWorker, RunnerDeps, rfc3339

JSON = dict[str, Any]
log = structlog.get_logger("noderunner")

SYNC_PERIOD_S = 0.2
HEARTBEAT_PERIOD_S = 10.0
WATCH_TIMEOUT_S = 300
RETRY_S = 1.0
SHUTDOWN_GRACE_S = 8.0  # longer than a launcher's ACPI wait, so guests are shut down, not orphaned
ORPHAN_STOP_GRACE_S = 15.0  # containers of a runner that was killed: time to stop (a launcher's guest shutdown)


class NodeRunner:
    """A kubelet stand-in for one node."""

    def __init__(self, deps: RunnerDeps, spec: nodeobj.NodeSpec, *, sync_period_s: float = SYNC_PERIOD_S,
                 heartbeat_period_s: float = HEARTBEAT_PERIOD_S) -> None:
        self.deps = deps
        self.spec = spec
        self.sync_period_s = sync_period_s
        self.heartbeat_period_s = heartbeat_period_s
        self.events: queue.Queue[tuple[str, JSON | set[str]]] = queue.Queue()
        self.workers: dict[str, PodWorker] = {}
        self.finished: dict[str, None] = {}  # uids of removed pods (bounded, oldest first): late events are ignored
        self.wake = threading.Event()
        self.listed = False  # the first pod list was applied (orphans of an earlier runner were handled)
        self.log = log.bind(node=spec.name)

    # --- watch thread -------------------------------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        selector = f"spec.nodeName={self.spec.name}"
        clock = self.deps.clock
        while not stop.is_set():
            try:
                page = self.deps.client.list(PODS, field_selector=selector)
                uids = set()
                for pod in page.get("items") or []:
                    uids.add(pod["metadata"]["uid"])
                    self.events.put(("SYNC", pod))
                self.events.put(("RELIST", uids))
                self.wake.set()
                rv = page["metadata"]["resourceVersion"]
                stream = self.deps.client.watch(PODS, resource_version=rv, field_selector=selector,
                                                timeout_seconds=WATCH_TIMEOUT_S)
                for ev in stream:
                    if stop.is_set():
                        break
                    self._on_event(ev)
            except errors.Gone:
                continue  # relist at once
            except errors.KubeError as e:
                if not stop.is_set():
                    self.log.warning("pod_watch_failed", error=str(e))
                clock.wait(stop, RETRY_S)

    def _on_event(self, ev: WatchEvent) -> None:
        if ev.type in ("ADDED", "MODIFIED"):
            self.events.put(("SYNC", ev.object))
        elif ev.type == "DELETED":
            self.events.put(("DELETED", ev.object))
        self.wake.set()

    # --- sync thread --------------------------------------------------------------------------

    def _apply(self, kind: str, item: JSON | set[str]) -> None:
        if kind == "RELIST":
            assert isinstance(item, set)
            for uid, w in self.workers.items():
                if uid not in item:
                    w.forget()
            if not self.listed:
                # The first list: containers an earlier runner left for pods no longer bound here are
                # stopped (the others were adopted by their pods' workers, the list's events came first).
                self.listed = True
                orphans = ctr.stop_orphans(self.deps.pods_dir, self.spec.name, keep=item,
                                           grace_s=ORPHAN_STOP_GRACE_S, clock=self.deps.clock)
                if orphans:
                    self.log.warning("orphan_containers_stopped", pids=orphans)
            return
        assert isinstance(item, dict)
        uid = item["metadata"]["uid"]
        existing = self.workers.get(uid)
        if kind == "DELETED":
            if existing is not None:
                existing.forget()
            return
        if existing is not None:
            existing.update(item)
            return
        if uid in self.finished:
            return  # a late event of a pod this runner already removed
        if (item.get("status") or {}).get("phase") in ("Succeeded", "Failed") \
                and not item["metadata"].get("deletionTimestamp"):
            return  # finished before this runner started: nothing to run
        w = PodWorker(item, self.deps, wake=self.wake.set)
        w.adopt()
        self.workers[uid] = w

    def _node_ready(self) -> bool:
        return self.deps.ns_pid() is not None

    def run(self, stop: threading.Event) -> None:
        """Register the node, then watch and sync until `stop` is set; then stop every container."""
        clock = self.deps.clock
        while not stop.is_set():
            try:
                nodeobj.register(self.deps.client, self.spec, ready=self._node_ready(), now=rfc3339(clock))
                nodeobj.renew_lease(self.deps.client, self.spec, renew_time=nodeobj.micro_time(clock.wall()))
                break
            except errors.KubeError as e:
                self.log.warning("node_register_failed", error=str(e))
                clock.wait(stop, RETRY_S)
        watcher = threading.Thread(target=self._watch, args=(stop,), name=f"watch-{self.spec.name}", daemon=True)
        watcher.start()
        was_ready: bool | None = self._node_ready()
        since = rfc3339(clock)
        next_beat = clock.now() + self.heartbeat_period_s
        self.log.info("node_runner_started")
        while not stop.is_set():
            self.wake.clear()
            while True:
                try:
                    kind, item = self.events.get_nowait()
                except queue.Empty:
                    break
                try:
                    self._apply(kind, item)
                except Exception as e:  # one event's failure must not end the node's sync loop
                    # (it did: the node stopped its heartbeats and turned NotReady for good, chaos seed 7 round 71)
                    self.log.error("event_apply_failed", kind=kind, error=repr(e), trace=traceback.format_exc())
            now = clock.now()
            for uid, w in list(self.workers.items()):
                try:
                    if w.sync(now):
                        del self.workers[uid]
                        self.finished[uid] = None
                        if len(self.finished) > 10000:
                            del self.finished[next(iter(self.finished))]
                except errors.KubeError as e:
                    self.log.warning("pod_sync_failed", pod=w.key, error=str(e))
                except Exception as e:  # likewise: one pod's bug must not stop the node's others
                    self.log.error("pod_sync_crashed", pod=w.key, error=repr(e), trace=traceback.format_exc())
            if now >= next_beat:
                next_beat = now + self.heartbeat_period_s
                ready = self._node_ready()
                try:
                    nodeobj.heartbeat(self.deps.client, self.spec, ready=ready, now=rfc3339(clock),
                                      was_ready=was_ready, since=since)
                    nodeobj.renew_lease(self.deps.client, self.spec, renew_time=nodeobj.micro_time(clock.wall()))
                    if ready != was_ready:
                        since = rfc3339(clock)
                    was_ready = ready
                except errors.KubeError as e:
                    self.log.warning("node_heartbeat_failed", error=str(e))
            clock.wait(self.wake, self.sync_period_s)
        self._shutdown()

    def _shutdown(self) -> None:
        """Unlike a kubelet, a stopping runner stops its containers: `cluster down` must leave nothing."""
        for w in self.workers.values():
            w.terminate_all()
        deadline = self.deps.clock.now() + SHUTDOWN_GRACE_S
        while self.deps.clock.now() < deadline and any(
                r.proc is not None and r.proc.poll() is None for w in self.workers.values() for r in w.runs):
            self.deps.clock.sleep(0.05)
        for w in self.workers.values():
            w.kill_all()
        with contextlib.suppress(errors.KubeError):  # the control plane may already be gone
            nodeobj.heartbeat(self.deps.client, self.spec, ready=False, now=rfc3339(self.deps.clock),
                              was_ready=None, since=None)
        self.log.info("node_runner_stopped")
