"""The node runner as a kubelet: pods with small test commands, through the API and kubectl only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from virtmigrate.kube.resources import NODES, PODS


def _pod(name: str, script: str, *, restart: str = "Never", node: str = "node0", grace: int = 30,
         **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                     "nodeSelector": {"kubernetes.io/hostname": node},
                     "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                                     **container}]}}


def _status(kube: Any, ns: str, name: str) -> dict[str, Any]:
    return kube.get(PODS, name, ns).get("status") or {}


def _terminated(st: dict[str, Any]) -> dict[str, Any] | None:
    cs = (st.get("containerStatuses") or [{}])[0]
    return (cs.get("state") or {}).get("terminated")


def _phase(kube: Any, ns: str, name: str, *phases: str) -> dict[str, Any] | None:
    st = _status(kube, ns, name)
    return st if st.get("phase") in phases else None


@pytest.mark.parametrize(("script", "policy", "phase", "code", "message"), [
    pytest.param('echo "it broke" > $VIRTMIGRATE_TERMINATION_LOG; exit 3', "File", "Failed", 3, "it broke\n",
                 id="exit-code-and-termination-log"),
    pytest.param("echo last words; exit 7", "FallbackToLogsOnError", "Failed", 7, "last words",
                 id="fallback-to-logs"),
    pytest.param("echo done > $VIRTMIGRATE_TERMINATION_LOG", "File", "Succeeded", 0, "done\n", id="success"),
])
def test_exit_codes_and_termination_messages(kube: Any, namespace: str, script: str, policy: str,
                                             phase: str, code: int, message: str) -> None:
    kube.create(PODS, _pod("p", script, terminationMessagePolicy=policy), namespace)
    st = wait_for(f"pod phase {phase}", lambda: _phase(kube, namespace, "p", phase))
    term = _terminated(st)
    assert term is not None and term["exitCode"] == code
    assert term.get("message", "") == message
    assert term["reason"] == ("Completed" if code == 0 else "Error")


def test_env_has_downward_api_fields_and_runs_in_the_nodes_namespace(kube: Any, namespace: str,
                                                                   local_cluster: Any) -> None:
    script = ('echo "$MY_NAME $MY_NS $MY_NODE $MY_IP $(virsh -q -c qemu:///system capabilities | '
              'grep -o "<uuid>[^<]*" | head -1 | cut -c7-)" > $VIRTMIGRATE_TERMINATION_LOG')
    env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}} for n, p in
           (("MY_NAME", "metadata.name"), ("MY_NS", "metadata.namespace"), ("MY_NODE", "spec.nodeName"),
            ("MY_IP", "status.podIP"))]
    kube.create(PODS, _pod("env", script, node="node2", env=env), namespace)
    st = wait_for("pod Succeeded", lambda: _phase(kube, namespace, "env", "Succeeded", "Failed"))
    words = (_terminated(st) or {}).get("message", "").split()
    assert words[:4] == ["env", namespace, "node2", "127.0.0.1"]
    # qemu:///system inside the pod is node2's own libvirt daemon: its host UUID is node2's system UUID.
    node = kube.get(NODES, "node2")
    assert words[4] == node["status"]["nodeInfo"]["systemUUID"] == local_cluster.hosts.host(2).host_uuid


def test_service_account_token_is_subject_to_rbac(kube: Any, kubectl: Any, namespace: str) -> None:
    kubectl("create", "serviceaccount", "reader")
    kubectl("create", "role", "pod-reader", "--verb=get", "--resource=pods")
    kubectl("create", "rolebinding", "reader", "--role=pod-reader", f"--serviceaccount={namespace}:reader")
    script = ("kubectl get pod $HOSTNAME -o name > $VIRTMIGRATE_TERMINATION_LOG 2>&1; "
              "kubectl get secrets >> $VIRTMIGRATE_TERMINATION_LOG 2>&1; true")
    pod = _pod("sa", script)
    pod["spec"]["serviceAccountName"] = "reader"
    kube.create(PODS, pod, namespace)
    st = wait_for("pod Succeeded", lambda: _phase(kube, namespace, "sa", "Succeeded", "Failed"))
    msg = (_terminated(st) or {}).get("message", "")
    assert "pod/sa" in msg
    assert f'system:serviceaccount:{namespace}:reader" cannot list resource "secrets"' in msg


def test_restart_policy_on_failure_restarts_until_success(kube: Any, namespace: str) -> None:
    script = ('n=$(cat $VIRTMIGRATE_POD_DIR/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > $VIRTMIGRATE_POD_DIR/n; '
              '[ $n -ge 3 ]')
    kube.create(PODS, _pod("onfail", script, restart="OnFailure"), namespace)
    st = wait_for("pod Succeeded", lambda: _phase(kube, namespace, "onfail", "Succeeded", "Failed"), timeout=90)
    assert st["phase"] == "Succeeded"
    cs = st["containerStatuses"][0]
    assert cs["restartCount"] == 2
    assert cs["lastState"]["terminated"]["exitCode"] == 1


def test_restart_policy_always_restarts_a_container_that_exits_zero(kube: Any, namespace: str) -> None:
    kube.create(PODS, _pod("always", "exit 0", restart="Always"), namespace)
    st = wait_for("two restarts", lambda: (s := _status(kube, namespace, "always")) and
                  (s.get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 2 and s)
    assert st["phase"] == "Running"


def test_restart_policy_never_does_not_restart(kube: Any, namespace: str) -> None:
    kube.create(PODS, _pod("never", "exit 1"), namespace)
    st = wait_for("pod Failed", lambda: _phase(kube, namespace, "never", "Failed"))
    assert st["containerStatuses"][0]["restartCount"] == 0


def test_readiness_follows_the_exec_probe(kube: Any, namespace: str, local_cluster: Any) -> None:
    d = "$VIRTMIGRATE_POD_DIR"
    script = (f"until [ -e {d}/go ]; do sleep 0.1; done; touch {d}/ready; "
              f"until [ -e {d}/stop ]; do sleep 0.1; done; rm {d}/ready; sleep 600")
    probe = {"exec": {"command": ["sh", "-c", f"test -e {d}/ready"]}, "periodSeconds": 1, "failureThreshold": 1}
    kube.create(PODS, _pod("probe", script, grace=1, readinessProbe=probe), namespace)

    def ready(want: str) -> dict[str, Any] | None:
        st = _status(kube, namespace, "probe")
        conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
        return st if st.get("phase") == "Running" and conds.get("Ready") == want else None

    st = wait_for("Running and not Ready", lambda: ready("False"))
    assert st["containerStatuses"][0]["ready"] is False
    # No exec API here: the test reaches the pod's scratch directory on the (same) machine.
    pod_dir = local_cluster.state / "pods" / kube.get(PODS, "probe", namespace)["metadata"]["uid"]
    (pod_dir / "go").touch()
    st = wait_for("Ready", lambda: ready("True"))
    assert st["containerStatuses"][0]["ready"] is True
    (pod_dir / "stop").touch()
    wait_for("not Ready again", lambda: ready("False"))


def _last_status_before_removal(kube: Any, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    """Delete the pod and follow its watch until it is gone; the last status the runner reported."""
    pod = kube.get(PODS, name, ns)
    rv = pod["metadata"]["resourceVersion"]
    kube.delete(PODS, name, ns)
    last = pod.get("status") or {}
    for ev in kube.watch(PODS, ns, resource_version=rv, field_selector=f"metadata.name={name}",
                         timeout_seconds=int(timeout)):
        last = ev.object.get("status") or last
        if ev.type == "DELETED":
            return last
    raise AssertionError(f"pod {name} was not removed within {timeout}s; last status {json.dumps(last)}")


def test_deletion_sends_sigterm_first(kube: Any, namespace: str) -> None:
    script = "trap 'echo got TERM > $VIRTMIGRATE_TERMINATION_LOG; exit 0' TERM; while true; do sleep 0.1; done"
    kube.create(PODS, _pod("term", script, grace=30), namespace)
    wait_for("Running", lambda: _phase(kube, namespace, "term", "Running"))
    term = _terminated(_last_status_before_removal(kube, namespace, "term"))
    assert term is not None and term["exitCode"] == 0 and term["message"] == "got TERM\n"


def test_deletion_kills_after_the_grace_period(kube: Any, namespace: str) -> None:
    kube.create(PODS, _pod("stubborn", "trap '' TERM; while true; do sleep 0.1; done", grace=2), namespace)
    wait_for("Running", lambda: _phase(kube, namespace, "stubborn", "Running"))
    term = _terminated(_last_status_before_removal(kube, namespace, "stubborn"))
    assert term is not None and term["exitCode"] == 137 and term.get("signal") == 9


def test_a_deleted_pod_whose_container_never_ran_ends_failed_not_pending(kube: Any, namespace: str) -> None:
    """As a kubelet does: a pod deleted before its container could start (here an environment the runner
    cannot provide) ends in a terminal phase. One held by a finalizer (an agent pod's outcome) says so
    instead of staying Pending forever."""
    pod = _pod("never-ran", "exit 0", env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    pod["metadata"]["finalizers"] = ["example.com/hold"]
    kube.create(PODS, pod, namespace)
    wait_for("waiting to be created", lambda: (lambda cs: cs if (cs.get("state") or {}).get("waiting") else None)(
        (_status(kube, namespace, "never-ran").get("containerStatuses") or [{}])[0]))
    kube.delete(PODS, "never-ran", namespace)
    st = wait_for("a terminal phase", lambda: _phase(kube, namespace, "never-ran", "Failed", "Succeeded"), timeout=30)
    assert st["phase"] == "Failed"
    assert (_terminated(st) or {}).get("reason") == "ContainerStatusUnknown"
    kube.patch(PODS, "never-ran", {"metadata": {"finalizers": None}}, namespace)
