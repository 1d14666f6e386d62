"""manifests/ installs on a real API server, and what it installs is what an operator expects.

The server-side dry run and the apply go through the real kubectl (its kustomize) against the real
kube-apiserver, with its admission chain: strict field validation, RBAC object checks and the
PodSecurity admission plugin, which admits the controller's pod template at the "restricted" level.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, Kubectl
from tests.manifests_support import (
    BASE_NAMESPACE,
    CLUSTER_SCOPED_KINDS,
    CONTROLLER_DEPLOYMENT,
    MANIFESTS,
    MONITORING,
    controller_environment,
    find,
    kustomize,
    render,
    select,
    to_yaml,
)

DATA = Path(__file__).parent / "data"

JSON = dict[str, Any]


def _suffix() -> str:
    return f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def cluster_kubectl(cluster: Cluster) -> Kubectl:
    """kubectl without a default namespace (the objects carry their own)."""
    return Kubectl(cluster.kubeconfig)


@pytest.fixture
def cleanup_cluster_scoped(cluster_kubectl: Kubectl) -> Iterator[list[JSON]]:
    """Objects appended here are deleted after the test (cluster-scoped ones outlive the namespace).
    CRDs are never deleted: other tests of the same cluster use them."""
    objs: list[JSON] = []
    yield objs
    for o in objs:
        if o["kind"] in CLUSTER_SCOPED_KINDS:
            cluster_kubectl.run("delete", o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found",
                                check=False, namespaced=False)


# ---------------------------------------------------------------------------------------------
# Server-side dry runs


@pytest.mark.integration
def test_server_dry_run_of_the_base_passes(cluster_kubectl: Kubectl) -> None:
    """The literal command of docs/install.md, as a dry run. The dry run does not create the
    namespace, so namespaced objects need it to exist: it is created (and left, empty) if absent."""
    if cluster_kubectl.run("get", "namespace", BASE_NAMESPACE, check=False, namespaced=False).returncode:
        cluster_kubectl.run("create", "namespace", BASE_NAMESPACE, namespaced=False)
    out = cluster_kubectl("apply", "--dry-run=server", "-k", str(MANIFESTS), namespaced=False)
    rendered = kustomize(MANIFESTS)
    assert out.count("(server dry run)") == len(rendered), out


@pytest.mark.integration
def test_server_dry_run_with_the_monitoring_component_passes(
        cluster_kubectl: Kubectl, kubectl: Kubectl, namespace: str) -> None:
    """ServiceMonitor and PrometheusRule validate against (minimal copies of) the operator's CRDs."""
    cluster_kubectl.run("apply", "-f", str(DATA / "monitoring-crds.yaml"), namespaced=False)
    cluster_kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
                        namespaced=False)
    objs = render(namespace=namespace, name_suffix=_suffix(), components=[MONITORING])
    assert {o["kind"] for o in objs} >= {"ServiceMonitor", "PrometheusRule"}
    out = cluster_kubectl("apply", "--dry-run=server", "-f", "-", input=to_yaml(objs), namespaced=False)
    assert out.count("(server dry run)") == len(objs), out


# ---------------------------------------------------------------------------------------------
# A real apply


@pytest.mark.integration
def test_apply_then_get_shows_every_object(cluster_kubectl: Kubectl, namespace: str,
                                           cleanup_cluster_scoped: list[JSON]) -> None:
    """`kubectl apply -k` (the base, moved to this test's namespace) creates every object, and
    `kubectl get` finds each one with the content that was applied."""
    objs = render(namespace=namespace, name_suffix=_suffix())
    cleanup_cluster_scoped.extend(objs)
    cluster_kubectl("apply", "-f", "-", input=to_yaml(objs), namespaced=False)

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(to_yaml(objs))
    try:
        got = json.loads(cluster_kubectl("get", "-f", f.name, "-o", "json", namespaced=False))
    finally:
        os.unlink(f.name)
    items = got["items"] if got.get("kind") == "List" else [got]
    seen = {(i["kind"], i["metadata"].get("namespace"), i["metadata"]["name"]) for i in items}
    want = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs}
    assert seen == want
    assert len(want) == len(objs)  # no two rendered objects collide

    live = {(i["kind"], i["metadata"]["name"]): i for i in items}
    dep = live[("Deployment", f"{CONTROLLER_DEPLOYMENT}{objs_suffix(objs)}")]
    assert dep["spec"]["replicas"] == 2
    for o in select(objs, "ClusterRole", "Role"):
        assert live[(o["kind"], o["metadata"]["name"])]["rules"] == o["rules"]


def objs_suffix(objs: list[JSON]) -> str:
    """The name suffix a rendering used, read back from the Deployment's name (pure)."""
    (dep,) = select(objs, "Deployment")
    return str(dep["metadata"]["name"])[len(CONTROLLER_DEPLOYMENT):]


# ---------------------------------------------------------------------------------------------
# The controller Deployment as an operator expects it


@pytest.fixture(scope="module")
def base() -> list[JSON]:
    return kustomize(MANIFESTS)


def _controller(objs: list[JSON]) -> tuple[JSON, JSON]:
    dep = find(objs, "Deployment", CONTROLLER_DEPLOYMENT)
    (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"]
    return dep, container


def test_controller_runs_two_replicas_with_leader_election(base: list[JSON]) -> None:
    dep, c = _controller(base)
    assert dep["spec"]["replicas"] == 2
    assert "--leader-elect" in c.get("args", [])
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c.get("env", []) if "valueFrom" in e}
    assert env["VIRTMIGRATE_IDENTITY"] == "metadata.name"  # one lease holder identity per pod
    assert env["VIRTMIGRATE_LEASE_NAMESPACE"] == "metadata.namespace"


def test_controller_probes_resources_and_hardening(base: list[JSON]) -> None:
    dep, c = _controller(base)
    pod = dep["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["port"] in ports
    assert c["readinessProbe"]["httpGet"]["port"] in ports
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}, kind
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["serviceAccountName"] == "virtmigrate-controller"


def test_metrics_service_selects_the_controller_pods_and_port(base: list[JSON]) -> None:
    dep, c = _controller(base)
    svc = find(base, "Service", "virtmigrate-controller-metrics")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in c["ports"]}


def test_service_monitor_selects_the_metrics_service() -> None:
    objs = render(components=[MONITORING])
    svc = find(objs, "Service", "virtmigrate-controller-metrics")
    (sm,) = select(objs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}


def _container_env(base: list[JSON], pod_name: str, pod_namespace: str) -> dict[str, str]:
    return controller_environment(base, pod_name=pod_name, pod_namespace=pod_namespace)


def test_every_configured_variable_is_one_the_controller_reads(
        base: list[JSON], capsys: pytest.CaptureFixture[str]) -> None:
    from virtmigrate.controller.config import parse_config

    with pytest.raises(SystemExit):
        parse_config(["--help"], {})
    help_text = capsys.readouterr().out
    for var in _container_env(base, "p", "ns"):
        if var.startswith("VIRTMIGRATE_"):
            assert f"${var}" in help_text, f"{var} is set by the manifests but the controller does not read it"


def test_the_controller_accepts_the_manifests_configuration(base: list[JSON]) -> None:
    """The configuration the Deployment gives the controller parses, and wires it as intended:
    metrics and probes on the container port, the Lease in the pod's namespace, one identity per pod."""
    from virtmigrate.controller.config import parse_config

    _, c = _controller(base)
    cfg = parse_config([*c.get("args", [])], _container_env(base, "virtmigrate-controller-abc-1", "vm-sys"))
    host, _, port = cfg.metrics_address.rpartition(":")
    assert host in ("0.0.0.0", "", "[::]")
    assert int(port) == c["ports"][0]["containerPort"]
    assert cfg.leader_elect is True
    assert cfg.lease_namespace == "vm-sys"
    assert cfg.identity == "virtmigrate-controller-abc-1"
    assert cfg.log_format == "json"
    assert cfg.agent_image == c["image"]


def test_agent_image_follows_the_controller_image_when_an_operator_sets_it(tmp_path: Path) -> None:
    """`kustomize edit set image` in manifests/ (docs/install.md) changes the controller's image; the
    agent pods it creates must run the same image, so VIRTMIGRATE_IMAGE follows (kustomize
    replacements)."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    text = (copy / "kustomization.yaml").read_text()
    assert "  newTag: 0.1.0\n" in text
    text = text.replace("  newTag: 0.1.0\n", "  newName: registry.example.com/ops/controller\n  newTag: 9.9.9\n")
    (copy / "kustomization.yaml").write_text(text)
    _, c = _controller(kustomize(copy))
    assert c["image"] == "registry.example.com/ops/controller:9.9.9"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["VIRTMIGRATE_IMAGE"] == c["image"]


def test_configuration_rolls_out_through_a_hashed_config_map(base: list[JSON]) -> None:
    _, c = _controller(base)
    (ref,) = [e["configMapRef"]["name"] for e in c["envFrom"]]
    cm = find(base, "ConfigMap", ref)
    assert ref.startswith("virtmigrate-controller-config-")  # name carries the content hash
    assert all(k.startswith("VIRTMIGRATE_") for k in cm["data"])


def test_grafana_dashboard_is_valid_json_with_panels(base: list[JSON]) -> None:
    cm = find(base, "ConfigMap", "virtmigrate-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    dash = json.loads(text)
    assert dash["title"]
    assert [p for p in dash["panels"] if p.get("targets")]


@pytest.mark.integration
def test_controller_pod_is_admitted_at_the_restricted_pod_security_level(
        cluster_kubectl: Kubectl, namespace: str, base: list[JSON]) -> None:
    """The API server's PodSecurity admission, enforcing "restricted", admits the controller's pod."""
    cluster_kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "--overwrite", namespaced=False)
    dep, _ = _controller(base)
    template = dep["spec"]["template"]
    pod: JSON = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "controller-template", "namespace": namespace,
                              "labels": template["metadata"]["labels"]},
                 "spec": {**template["spec"], "serviceAccountName": "default"}}
    proc = cluster_kubectl.run("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod),
                               check=False, namespaced=False)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr

    # The same pod without its hardening is refused: the check above was not vacuous.
    bare = {**pod, "spec": {**pod["spec"], "securityContext": {},
                            "containers": [{**c, "securityContext": {}} for c in pod["spec"]["containers"]]}}
    proc = cluster_kubectl.run("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bare),
                               check=False, namespaced=False)
    assert proc.returncode != 0 and "restricted" in proc.stderr, proc.stderr
