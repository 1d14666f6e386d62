"""Pure kubelet decisions: restarts, back-off, readiness thresholds, pod phase and the pod status JSON.

Fed by podworker.py with what it observed of its processes (ContainerView) and consumed by it to act and
to report. No I/O, no clock reads: times arrive as arguments (monotonic seconds or RFC 3339 strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

JSON = dict[str, Any]
ContainerState = Literal["waiting", "running", "terminated"]

RESTART_BACKOFF_BASE_S = 1.0   # kubelet uses 10 s; the local cluster restarts faster for quick tests
RESTART_BACKOFF_CAP_S = 30.0   # kubelet caps at 300 s
MAX_TERMINATION_MESSAGE = 4096  # bytes, as the kubelet
FALLBACK_LOG_LINES = 80         # FallbackToLogsOnError: the last lines of the container's output
FALLBACK_LOG_BYTES = 2048


@dataclass(frozen=True)
class Terminated:
    """One finished run of a container."""

    exit_code: int
    reason: str       # Completed, Error, or why it never ran
    message: str      # the termination message
    started_at: str   # RFC 3339
    finished_at: str
    signal: int = 0   # the signal that killed it, 0 if it exited


@dataclass(frozen=True)
class ContainerView:
    """What a pod worker knows of one container, the input of every status decision."""

    name: str
    state: ContainerState
    image: str = ""
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    running_since: str = ""
    terminated: Terminated | None = None       # the current state's details when state == "terminated"
    last_terminated: Terminated | None = None  # the previous run, when it was restarted
    restart_count: int = 0
    ready: bool = False
    pid: int = 0


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """Whether a container that exited with `exit_code` runs again under the pod's restartPolicy."""
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def restart_backoff_s(restart_count: int, *, base: float = RESTART_BACKOFF_BASE_S,
                      cap: float = RESTART_BACKOFF_CAP_S) -> float:
    """Delay before restart number `restart_count + 1`: none for the first, then doubling up to `cap`."""
    if restart_count <= 0:
        return 0.0
    return float(min(base * 2 ** (restart_count - 1), cap))


def exit_code_of(returncode: int) -> tuple[int, int]:
    """Popen's returncode -> (exit code as the kubelet reports it, signal number or 0)."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, 0


def terminated_reason(exit_code: int, sig: int) -> str:
    """The kubelet's reasons: Completed for 0, Error otherwise (a grace-period kill is Error with 137)."""
    return "Completed" if exit_code == 0 else "Error"


def termination_message(file_text: str, log_tail: str, *, policy: str, exit_code: int) -> str:
    """The message the kubelet reports: the termination-log file, else (FallbackToLogsOnError and a
    failure) the tail of the container's output."""
    msg = file_text[:MAX_TERMINATION_MESSAGE]
    if msg.strip() or policy != "FallbackToLogsOnError" or exit_code == 0:
        return msg
    lines = log_tail.splitlines()[-FALLBACK_LOG_LINES:]
    return "\n".join(lines)[-FALLBACK_LOG_BYTES:]


def next_readiness(ready: bool, successes: int, failures: int, *, success_threshold: int,
                   failure_threshold: int) -> bool:
    """Readiness after a probe, given the consecutive successes/failures counted including it."""
    if successes >= max(success_threshold, 1):
        return True
    if failures >= max(failure_threshold, 1):
        return False
    return ready


def compute_phase(restart_policy: str, containers: Sequence[ContainerView]) -> str:
    """The pod phase from its containers, as the kubelet computes it."""
    if not containers:
        return "Pending"
    states = [c.state for c in containers]
    if "running" in states:
        return "Running"
    if all(s == "terminated" for s in states):
        codes = [c.terminated.exit_code if c.terminated else 1 for c in containers]
        if all(code == 0 for code in codes):
            return "Succeeded" if restart_policy != "Always" else "Running"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    # some waiting: before the first start it is Pending; waiting to restart it stays Running
    if any(c.restart_count > 0 or c.last_terminated is not None or c.state == "terminated" for c in containers):
        return "Running"
    return "Pending"


def _terminated_json(t: Terminated) -> JSON:
    out: JSON = {"exitCode": t.exit_code, "reason": t.reason, "startedAt": t.started_at or None,
                 "finishedAt": t.finished_at or None, "containerID": ""}
    if t.message:
        out["message"] = t.message
    if t.signal:
        out["signal"] = t.signal
    return {k: v for k, v in out.items() if v not in (None, "")}


def container_status(c: ContainerView) -> JSON:
    """One entry of status.containerStatuses."""
    if c.state == "running":
        state: JSON = {"running": {"startedAt": c.running_since}}
    elif c.state == "terminated" and c.terminated is not None:
        state = {"terminated": _terminated_json(c.terminated)}
    else:
        waiting: JSON = {"reason": c.waiting_reason}
        if c.waiting_message:
            waiting["message"] = c.waiting_message
        state = {"waiting": waiting}
    out: JSON = {"name": c.name, "state": state,
                 "lastState": {"terminated": _terminated_json(c.last_terminated)} if c.last_terminated else {},
                 "ready": c.ready and c.state == "running", "restartCount": c.restart_count,
                 "image": c.image, "imageID": "", "started": c.state == "running"}
    if c.pid:
        out["containerID"] = f"virtmigrate://{c.pid}"
    return out


def _condition(prev: Mapping[str, Mapping[str, Any]], ctype: str, ok: bool, now: str, reason: str = "") -> JSON:
    status = "True" if ok else "False"
    old = prev.get(ctype) or {}
    since = old.get("lastTransitionTime") if old.get("status") == status else now
    cond: JSON = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since or now}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def compute_pod_status(restart_policy: str, containers: Sequence[ContainerView], *,
                       previous: Mapping[str, Any], host_ip: str, start_time: str, now: str) -> JSON:
    """The whole pod status the runner reports (it replaces status.conditions and containerStatuses)."""
    phase = compute_phase(restart_policy, containers)
    prev = {c.get("type", ""): c for c in previous.get("conditions") or [] if isinstance(c, Mapping)}
    all_ready = bool(containers) and all(c.ready and c.state == "running" for c in containers)
    terminal = phase in ("Succeeded", "Failed")
    not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    ready = all_ready and not terminal
    conditions = [
        _condition(prev, "PodScheduled", True, now),
        _condition(prev, "Initialized", True, now),
        _condition(prev, "ContainersReady", ready, now, not_ready_reason),
        _condition(prev, "Ready", ready, now, not_ready_reason),
    ]
    status: JSON = {"phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                    "podIP": host_ip, "podIPs": [{"ip": host_ip}], "startTime": start_time,
                    "containerStatuses": [container_status(c) for c in containers]}
    return status


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `new` differs from what was last reported (ignoring key order)."""
    return dict(old) != dict(new)
