"""One pod on one node: runs its containers, probes them, kills them on deletion, reports its status.

Owned by runner.py, which feeds it the latest pod object (`update`, `forget` when the object vanished)
and calls `sync(now)` from the node's single sync thread (so nothing here needs a lock). Every decision
(restart, back-off, readiness, phase, status) is a pure function of decide.py; this module only observes
processes, starts and signals them, and talks to the API.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from virtmigrate import errors
from virtmigrate.clock import Clock
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import PODS
from virtmigrate.local.noderunner import container as ctr
from virtmigrate.local.noderunner import credentials, decide, podenv

JSON = dict[str, Any]
log = structlog.get_logger("noderunner")

DEFAULT_GRACE_S = 30
ORPHAN_GRACE_S = 2.0  # a pod object force-deleted under us: its processes get this long after SIGTERM


def rfc3339(clock: Clock) -> str:
    return clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunnerDeps:
    """What every pod worker of a node shares."""

    client: KubeClient
    clock: Clock
    node: str
    pods_dir: Path                       # <state>/pods: one directory per pod uid
    bin_dir: Path                        # console scripts (the image entry points)
    ns_pid: Callable[[], int | None]     # the node's libvirtd pid, None while it is down
    server: str                          # API server URL, for pods' kubeconfigs
    ca_file: Path
    api_host: str = "127.0.0.1"
    api_port: int = 0


@dataclass
class _Run:
    """Mutable runtime state of one container."""

    spec: Mapping[str, Any]
    proc: ctr.Process | None = None
    state: decide.ContainerState = "waiting"
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    started_at: str = ""
    terminated: decide.Terminated | None = None
    last_terminated: decide.Terminated | None = None
    restart_count: int = 0
    next_start: float = 0.0
    ready: bool = False
    successes: int = 0
    failures: int = 0
    probe: subprocess.Popen[bytes] | None = None
    probe_started: float = 0.0
    next_probe: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    def view(self) -> decide.ContainerView:
        return decide.ContainerView(
            name=self.name, state=self.state, image=str(self.spec.get("image", "")),
            waiting_reason=self.waiting_reason, waiting_message=self.waiting_message,
            running_since=self.started_at, terminated=self.terminated, last_terminated=self.last_terminated,
            restart_count=self.restart_count, ready=self.ready,
            pid=self.proc.pid if self.proc is not None and self.state == "running" else 0)


@dataclass
class PodWorker:
    pod: JSON
    deps: RunnerDeps
    runs: list[_Run] = field(default_factory=list)
    gone: bool = False               # the object is gone from the API
    kill_deadline: float | None = None
    kubeconfig: Path | None = None
    credentials_ready: bool = False
    reported: JSON = field(default_factory=dict)
    start_time: str = ""
    wake: Callable[[], None] = lambda: None  # asks the node's sync loop for a step now (a process exited)

    def __post_init__(self) -> None:
        self.runs = [_Run(spec=c) for c in (self.pod.get("spec") or {}).get("containers") or []]
        self.log = log.bind(node=self.deps.node, pod=self.key)

    # --- inputs -------------------------------------------------------------------------------

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def key(self) -> str:
        m = self.pod["metadata"]
        return f"{m.get('namespace')}/{m.get('name')}"

    @property
    def dir(self) -> Path:
        return self.deps.pods_dir / self.uid

    def update(self, pod: JSON) -> None:
        self.pod = pod

    def forget(self) -> None:
        self.gone = True

    # --- the sync step ------------------------------------------------------------------------

    def sync(self, now: float) -> bool:
        """One step; True when the worker is finished (pod removed and its processes dead)."""
        self._reap(now)
        meta = self.pod.get("metadata") or {}
        if self.gone or meta.get("deletionTimestamp"):
            return self._terminate(now)
        phase = decide.compute_phase(self._policy, [r.view() for r in self.runs])
        if phase not in ("Succeeded", "Failed"):
            self._start_due(now)
            self._probe(now)
        self._report()
        return False

    @property
    def _policy(self) -> str:
        return str((self.pod.get("spec") or {}).get("restartPolicy") or "Always")

    def _reap(self, now: float) -> None:
        """Notice exited containers and decide about their restart."""
        for r in self.runs:
            if r.proc is None or r.state != "running":
                continue
            rc = r.proc.poll()
            if rc is None:
                continue
            ctr.signal_group(r.proc, signal.SIGKILL)  # leftovers of the container die with it
            code, sig = decide.exit_code_of(rc)
            r.terminated = self._ended(r, code, sig, r.started_at)
            r.state, r.ready, r.successes, r.failures = "terminated", False, 0, 0
            self._stop_probe(r)
            self.log.info("container_exited", container=r.name, exit_code=code, signal=sig)
            if not self.gone and decide.should_restart(self._policy, code) \
                    and not (self.pod.get("metadata") or {}).get("deletionTimestamp"):
                r.next_start = now + decide.restart_backoff_s(r.restart_count)
                if r.next_start > now:
                    r.last_terminated, r.terminated = r.terminated, None
                    r.state, r.waiting_reason = "waiting", "CrashLoopBackOff"
                    r.waiting_message = f"back-off {r.next_start - now:.0f}s restarting failed container"

    def _restart_pending(self, r: _Run) -> bool:
        if r.state == "waiting" and r.waiting_reason == "CrashLoopBackOff":
            return True
        return r.state == "terminated" and r.terminated is not None and \
            decide.should_restart(self._policy, r.terminated.exit_code)

    def _start_due(self, now: float) -> None:
        for r in self.runs:
            if r.state == "running" or now < r.next_start:
                continue
            ran_before = r.proc is not None or r.terminated is not None or r.last_terminated is not None
            if not ran_before:
                self._start(r, now, restart=False)
            elif self._restart_pending(r):
                self._start(r, now, restart=True)

    def _prepare(self) -> bool:
        """Pod directory and service-account credentials, once per pod."""
        if self.credentials_ready:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        if credentials.wants_token(self.pod):
            token = credentials.request_token(self.deps.client, self.pod, audience=self.deps.server)
            if token is not None:
                self.kubeconfig = credentials.write_kubeconfig(
                    self.dir, server=self.deps.server, ca_file=self.deps.ca_file, token=token,
                    namespace=str(self.pod["metadata"].get("namespace", "")))
        self.credentials_ready = True
        self.start_time = rfc3339(self.deps.clock)
        return True

    def _start(self, r: _Run, now: float, *, restart: bool) -> None:
        try:
            self._prepare()
            ns_pid = self.deps.ns_pid()
            if ns_pid is None:
                raise errors.ConfigError(f"node {self.deps.node}: its libvirt host is not running")
            term_log = self.dir / f"{r.name}.termination-log"
            ctx = podenv.RunnerContext(bin_dir=self.deps.bin_dir, pod_dir=self.dir, termination_log=term_log,
                                       api_host=self.deps.api_host, api_port=self.deps.api_port,
                                       kubeconfig=self.kubeconfig)
            env = podenv.container_env(self.pod, r.spec, ctx)
            argv = podenv.container_argv(r.spec, env, bin_dir=self.deps.bin_dir)
            term_log.write_text("")
            exit_file = self.dir / f"{r.name}.exit"
            exit_file.unlink(missing_ok=True)
            workdir = str(r.spec.get("workingDir") or self.dir)
            proc = ctr.spawn(ctr.shimmed(argv, exit_file), env=env, ns_pid=ns_pid, workdir=workdir,
                             log_path=self.dir / f"{r.name}.log")
            ctr.record_pid(self.dir / f"{r.name}.pid", proc.pid, node=self.deps.node)
            ctr.notify_exit(proc, self.wake)
        except (errors.VirtMigrateError, OSError) as e:
            # Not startable (yet): report why and try again on a later sync, as the kubelet does.
            r.waiting_reason = "CreateContainerConfigError" if isinstance(e, errors.VirtMigrateError) \
                else "CreateContainerError"
            r.waiting_message = str(e)
            if r.proc is None:
                r.state = "waiting"
            r.next_start = now + 2.0
            return
        if restart:
            r.restart_count += 1
            if r.terminated is not None:
                r.last_terminated = r.terminated
        r.proc, r.state, r.terminated = proc, "running", None
        r.waiting_reason, r.waiting_message = "", ""
        r.started_at = rfc3339(self.deps.clock)
        r.ready = "readinessProbe" not in r.spec
        probe = r.spec.get("readinessProbe") or {}
        r.next_probe = now + float(probe.get("initialDelaySeconds") or 0)
        self.log.info("container_started", container=r.name, pid=proc.pid, restarts=r.restart_count)

    def adopt(self) -> None:
        """This pod's containers were started by an earlier runner of the node (which was killed): re-attach
        to those still running, as a kubelet does after a restart; one that ended meanwhile is reported with
        the code its shim recorded (ContainerStatusUnknown when there is none), and its restart policy
        decides, as on a kubelet."""
        statuses = {c.get("name"): c for c in (self.pod.get("status") or {}).get("containerStatuses") or []}
        for r in self.runs:
            st = statuses.get(r.name) or {}
            running = (st.get("state") or {}).get("running")
            if running is None and not st.get("restartCount"):
                continue
            r.restart_count = int(st.get("restartCount") or 0)
            rec = ctr.recorded_pid(self.dir / f"{r.name}.pid", self.deps.node) if running is not None else None
            exit_file = self.dir / f"{r.name}.exit"
            if rec is not None:
                r.proc, r.state = ctr.Adopted(rec[0], rec[1], exit_file, clock=self.deps.clock), "running"
                r.started_at = str(running.get("startedAt") or rfc3339(self.deps.clock))  # type: ignore[union-attr]
                r.ready = bool(st.get("ready"))
                self.credentials_ready = True
                self.start_time = str((self.pod.get("status") or {}).get("startTime") or "")
                probe = r.spec.get("readinessProbe") or {}
                r.next_probe = self.deps.clock.now() if probe else 0.0
                self.log.info("container_adopted", container=r.name, pid=rec[0])
                continue
            code = ctr.exit_code_in(exit_file) if running is not None else None
            r.terminated = self._unknown("the container ended while no node runner ran, and left no exit code") \
                if code is None else self._ended(r, code, 0, str((running or {}).get("startedAt") or ""))
            r.state, r.next_start, r.proc = "terminated", 0.0, None

    def _ended(self, r: _Run, code: int, sig: int, started_at: str) -> decide.Terminated:
        """How container `r` ended with `code` (signal `sig`): its termination message, as the kubelet reads it."""
        text = ctr.read_tail(self.dir / f"{r.name}.termination-log", decide.MAX_TERMINATION_MESSAGE)
        tail = ctr.read_tail(self.dir / f"{r.name}.log", 16 * 1024)
        policy = str(r.spec.get("terminationMessagePolicy") or "File")
        msg = decide.termination_message(text, tail, policy=policy, exit_code=code)
        return decide.Terminated(code, decide.terminated_reason(code, sig), msg, started_at, rfc3339(self.deps.clock),
                                 sig)

    def _unknown(self, message: str) -> decide.Terminated:
        """A container whose end nobody saw (the kubelet's ContainerStatusUnknown)."""
        return decide.Terminated(ctr.UNKNOWN_EXIT, "ContainerStatusUnknown", message, "", rfc3339(self.deps.clock))

    # --- readiness ----------------------------------------------------------------------------

    def _probe(self, now: float) -> None:
        for r in self.runs:
            spec = r.spec.get("readinessProbe")
            if not spec or r.state != "running":
                continue
            timeout = float(spec.get("timeoutSeconds") or 1)
            if r.probe is not None:
                rc = r.probe.poll()
                if rc is None and now - r.probe_started < timeout:
                    continue
                if rc is None:
                    ctr.kill_group(r.probe)
                    r.probe.wait()
                ok = rc == 0
                r.probe = None
                r.successes, r.failures = (r.successes + 1, 0) if ok else (0, r.failures + 1)
                r.ready = decide.next_readiness(r.ready, r.successes, r.failures,
                                                success_threshold=int(spec.get("successThreshold") or 1),
                                                failure_threshold=int(spec.get("failureThreshold") or 3))
            if r.probe is None and now >= r.next_probe:
                r.next_probe = now + float(spec.get("periodSeconds") or 10)
                self._start_probe(r, spec, now)

    def _start_probe(self, r: _Run, spec: Mapping[str, Any], now: float) -> None:
        command = (spec.get("exec") or {}).get("command")
        if not command:
            r.ready = True  # only exec probes are supported; anything else counts as passing
            return
        ctx = podenv.RunnerContext(bin_dir=self.deps.bin_dir, pod_dir=self.dir,
                                   termination_log=self.dir / "probe.termination-log",
                                   api_host=self.deps.api_host, api_port=self.deps.api_port,
                                   kubeconfig=self.kubeconfig)
        try:
            env = podenv.container_env(self.pod, r.spec, ctx)
            argv = podenv.container_argv({"command": command}, env, bin_dir=self.deps.bin_dir)
            r.probe = ctr.spawn(argv, env=env, ns_pid=self.deps.ns_pid(), workdir=self.dir,
                                log_path=self.dir / f"{r.name}.probe.log")
            r.probe_started = now
            ctr.notify_exit(r.probe, self.wake)
        except (errors.VirtMigrateError, OSError):
            r.failures += 1
            r.ready = False

    def _stop_probe(self, r: _Run) -> None:
        if r.probe is not None:
            ctr.kill_group(r.probe)
            r.probe.wait()
            r.probe = None

    # --- deletion -----------------------------------------------------------------------------

    def _grace_s(self) -> float:
        meta = self.pod.get("metadata") or {}
        if self.gone:
            return ORPHAN_GRACE_S
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        return float(g)

    def _terminate(self, now: float) -> bool:
        running = [r for r in self.runs if r.proc is not None and r.state == "running"]
        if self.kill_deadline is None:
            self.kill_deadline = now + self._grace_s()
            self.log.info("pod_terminating", grace_s=self._grace_s(), running=len(running))
            for r in running:
                self._stop_probe(r)
                ctr.signal_group(r.proc, signal.SIGTERM)  # type: ignore[arg-type]
        if running and now >= self.kill_deadline:
            for r in running:
                ctr.kill_group(r.proc)  # type: ignore[arg-type]
            return False  # reaped on the next step
        if running:
            return False
        if not self.gone:
            # As a kubelet does, a deleted pod ends in a terminal phase before it goes: a container that never
            # ran (or waits to restart) is reported terminated. A pod held by a finalizer (an agent's outcome)
            # then says it ended instead of staying Pending.
            for r in self.runs:
                if r.state != "terminated":
                    r.terminated = self._unknown("the pod was deleted before this container ran")
                    r.state = "terminated"
            self._report()
            if not self.gone and self.reported.get("phase") not in ("Succeeded", "Failed"):
                return False  # the API did not take the final status: again on the next step
            # NotFound/Conflict: already gone, or a new pod of the same name that is not ours.
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                self.deps.client.delete(PODS, self.pod["metadata"]["name"], self.pod["metadata"]["namespace"],
                                        grace_period_seconds=0, uid=self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.log.info("pod_removed")
        return True

    def kill_all(self) -> None:
        """Stop every process now (runner shutdown)."""
        for r in self.runs:
            self._stop_probe(r)
            if r.proc is not None and r.proc.poll() is None:
                ctr.kill_group(r.proc)
                r.proc.wait()

    def terminate_all(self) -> None:
        for r in self.runs:
            if r.proc is not None and r.proc.poll() is None:
                ctr.signal_group(r.proc, signal.SIGTERM)

    # --- status -------------------------------------------------------------------------------

    def _report(self) -> None:
        deleted = bool((self.pod.get("metadata") or {}).get("deletionTimestamp")) or self.gone
        status = decide.compute_pod_status(
            "Never" if deleted else self._policy, [r.view() for r in self.runs],  # a deleted pod ends
            previous=self.reported or self.pod.get("status") or {},
            host_ip="127.0.0.1", start_time=self.start_time or rfc3339(self.deps.clock),
            now=rfc3339(self.deps.clock))
        if self.reported and not decide.status_changed(self.reported, status):
            return
        meta = self.pod["metadata"]
        try:
            self.deps.client.patch(PODS, meta["name"], {"metadata": {"uid": self.uid}, "status": status},
                                   meta["namespace"], subresource="status")
        except (errors.NotFound, errors.Conflict):
            self.gone = True  # deleted, or replaced by a namesake: stop what we run for it
            return
        except errors.Invalid as e:
            self.log.warning("status_rejected", error=str(e))
            self.reported = status  # the same status would be rejected again: wait for a change
            return
        except errors.KubeError as e:
            self.log.warning("status_update_failed", error=str(e))
            return  # retried on the next sync
        self.reported = status
        self.log.debug("pod_status", phase=status["phase"])
