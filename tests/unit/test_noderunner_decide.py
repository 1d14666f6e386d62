"""The node runner's kubelet decisions: restarts, back-off, readiness, phase and status (pure)."""

from __future__ import annotations

import pytest

from virtmigrate.local.noderunner import decide
from virtmigrate.local.noderunner.decide import ContainerView, Terminated


def _term(code: int, sig: int = 0) -> Terminated:
    return Terminated(code, "Completed" if code == 0 else "Error", "", "t0", "t1", sig)


@pytest.mark.parametrize(("policy", "code", "restart"), [
    pytest.param("Always", 0, True, id="always-success"),
    pytest.param("Always", 1, True, id="always-failure"),
    pytest.param("OnFailure", 0, False, id="onfailure-success"),
    pytest.param("OnFailure", 137, True, id="onfailure-killed"),
    pytest.param("Never", 1, False, id="never-failure"),
])
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert decide.should_restart(policy, code) is restart


def test_restart_backoff_doubles_from_nothing_up_to_the_cap() -> None:
    delays = [decide.restart_backoff_s(n, base=1, cap=8) for n in range(7)]
    assert delays == [0, 1, 2, 4, 8, 8, 8]


@pytest.mark.parametrize(("returncode", "expected"), [
    pytest.param(0, (0, 0), id="exit-0"),
    pytest.param(3, (3, 0), id="exit-3"),
    pytest.param(-9, (137, 9), id="sigkill"),
    pytest.param(-15, (143, 15), id="sigterm"),
])
def test_exit_code_of(returncode: int, expected: tuple[int, int]) -> None:
    assert decide.exit_code_of(returncode) == expected


@pytest.mark.parametrize(("file", "log", "policy", "code", "expected"), [
    pytest.param("msg", "out", "File", 1, "msg", id="file-wins"),
    pytest.param("", "a\nb", "File", 1, "", id="file-policy-no-fallback"),
    pytest.param("", "a\nb", "FallbackToLogsOnError", 1, "a\nb", id="fallback-on-error"),
    pytest.param("", "a\nb", "FallbackToLogsOnError", 0, "", id="no-fallback-on-success"),
    pytest.param("x" * 5000, "", "File", 1, "x" * 4096, id="truncated"),
])
def test_termination_message(file: str, log: str, policy: str, code: int, expected: str) -> None:
    assert decide.termination_message(file, log, policy=policy, exit_code=code) == expected


@pytest.mark.parametrize(("ready", "ok", "bad", "expected"), [
    pytest.param(False, 1, 0, True, id="one-success-makes-ready"),
    pytest.param(True, 0, 2, True, id="below-failure-threshold-stays-ready"),
    pytest.param(True, 0, 3, False, id="failure-threshold-makes-unready"),
    pytest.param(False, 0, 1, False, id="failure-keeps-unready"),
])
def test_next_readiness(ready: bool, ok: int, bad: int, expected: bool) -> None:
    assert decide.next_readiness(ready, ok, bad, success_threshold=1, failure_threshold=3) is expected


def _c(state: str, code: int | None = None, restarts: int = 0, last: int | None = None) -> ContainerView:
    return ContainerView(name="c", state=state,  # type: ignore[arg-type]
                         terminated=_term(code) if code is not None else None,
                         last_terminated=_term(last) if last is not None else None, restart_count=restarts)


@pytest.mark.parametrize(("policy", "containers", "phase"), [
    pytest.param("Never", [_c("waiting")], "Pending", id="not-started"),
    pytest.param("Never", [_c("running")], "Running", id="running"),
    pytest.param("Never", [_c("terminated", 0)], "Succeeded", id="never-success"),
    pytest.param("Never", [_c("terminated", 2)], "Failed", id="never-failure"),
    pytest.param("OnFailure", [_c("terminated", 0)], "Succeeded", id="onfailure-success"),
    pytest.param("OnFailure", [_c("waiting", restarts=1, last=1)], "Running", id="onfailure-backing-off"),
    pytest.param("Always", [_c("terminated", 0)], "Running", id="always-about-to-restart"),
    pytest.param("Never", [_c("terminated", 0), _c("running")], "Running", id="one-of-two-runs"),
    pytest.param("Never", [_c("terminated", 0), _c("terminated", 1)], "Failed", id="one-of-two-failed"),
])
def test_compute_phase(policy: str, containers: list[ContainerView], phase: str) -> None:
    assert decide.compute_phase(policy, containers) == phase


def test_pod_status_is_ready_only_when_every_container_is() -> None:
    ready = ContainerView(name="a", state="running", ready=True, running_since="t0")
    unready = ContainerView(name="b", state="running", ready=False, running_since="t0")
    st = decide.compute_pod_status("Always", [ready, unready], previous={}, host_ip="127.0.0.1",
                                   start_time="t0", now="t1")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainersNotReady"
    st2 = decide.compute_pod_status("Always", [ready], previous=st, host_ip="127.0.0.1", start_time="t0", now="t2")
    conds2 = {c["type"]: c for c in st2["conditions"]}
    assert conds2["Ready"]["status"] == "True" and conds2["Ready"]["lastTransitionTime"] == "t2"
    assert conds2["PodScheduled"]["lastTransitionTime"] == "t1"  # unchanged conditions keep their time
    assert st2["podIP"] == "127.0.0.1" and st2["containerStatuses"][0]["state"] == {"running": {"startedAt": "t0"}}


def test_container_status_reports_last_state_and_signal() -> None:
    c = ContainerView(name="c", state="waiting", waiting_reason="CrashLoopBackOff", restart_count=2,
                      last_terminated=_term(137, 9))
    out = decide.container_status(c)
    assert out["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert out["lastState"]["terminated"]["exitCode"] == 137 and out["lastState"]["terminated"]["signal"] == 9
    assert out["restartCount"] == 2 and out["ready"] is False
