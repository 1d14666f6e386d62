"""Render manifests/ with the real kustomize (inside kubectl) and pick objects out of the result.

Used by tests/integration/test_manifests.py and test_rbac.py, and by the e2e test that runs the
controller under these manifests' ServiceAccount and RBAC: it renders with its own namespace (and,
when several installs share one API server, a name suffix), applies `rbac_objects(...)` with
`kubectl apply -f -` (`to_yaml`), and mints the controller's token with the TokenRequest API.

The base hard-codes the namespace `virtmigrate-system`; `render(namespace=..., name_suffix=...)`
wraps it in a throw-away overlay so kustomize itself rewrites every namespace, name and reference
(RoleBinding subjects, roleRefs, serviceAccountName, the generated ConfigMap's name). CRD names are
never suffixed: kustomize leaves CustomResourceDefinitions' names alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"
MONITORING = MANIFESTS / "monitoring"  # kustomize component: ServiceMonitor, PrometheusRule
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"

BASE_NAMESPACE = "virtmigrate-system"
CONTROLLER_SA = "virtmigrate-controller"
AGENT_SA = "virtmigrate-agent"
LAUNCHER_SA = "virtmigrate-launcher"
CONTROLLER_DEPLOYMENT = "virtmigrate-controller"

# Who may do what: identities, RBAC, and the admission policy that narrows the agent's grant.
RBAC_KINDS = ("Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
              "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
CLUSTER_SCOPED_KINDS = ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                        "ValidatingAdmissionPolicyBinding")

JSON = dict[str, Any]


def kustomize(path: Path) -> list[JSON]:
    """`kubectl kustomize <path>`, parsed: every rendered object, in kustomize's order."""
    proc = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def overlay_text(base: Path, *, namespace: str | None, name_suffix: str, from_dir: Path,
                 components: Sequence[Path] = ()) -> str:
    """A kustomization.yaml that places `base` (plus `components`) in `namespace` with `name_suffix`
    (pure)."""
    doc: JSON = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        doc["namespace"] = namespace
    if name_suffix:
        doc["nameSuffix"] = name_suffix
    # kustomize refuses absolute paths to bases: refer to the base relative to the overlay.
    doc["resources"] = [os.path.relpath(base, from_dir)]
    if components:
        doc["components"] = [os.path.relpath(c, from_dir) for c in components]
    # JSON (which is YAML) quotes every string: PyYAML leaves a suffix such as "-5e3" bare, and
    # kustomize's YAML 1.2 reader then takes it for a number and refuses the Kustomization.
    return json.dumps(doc, indent=2) + "\n"


def render(*, namespace: str | None = None, name_suffix: str = "", path: Path = MANIFESTS,
           components: Sequence[Path] = ()) -> list[JSON]:
    """The kustomization at `path` (default: the base) with `components` (e.g. MONITORING),
    optionally moved to `namespace` with `name_suffix` appended to every name but the CRDs'."""
    if not namespace and not name_suffix and not components:
        return kustomize(path)
    with tempfile.TemporaryDirectory(prefix="virtmigrate-overlay-") as tmp:
        Path(tmp, "kustomization.yaml").write_text(
            overlay_text(path, namespace=namespace, name_suffix=name_suffix, from_dir=Path(tmp),
                         components=components))
        objs = kustomize(Path(tmp))
    # kustomize v5.8 does not know admission policies are cluster-scoped and gives them the namespace.
    for o in objs:
        if o["kind"] in CLUSTER_SCOPED_KINDS:
            o["metadata"].pop("namespace", None)
    return objs


def select(objs: Iterable[JSON], *kinds: str) -> list[JSON]:
    """The objects of the given kinds, in order (pure)."""
    return [o for o in objs if o.get("kind") in kinds]


def find(objs: Iterable[JSON], kind: str, name: str) -> JSON:
    """The one object of `kind` named `name` (pure); KeyError names what is missing."""
    for o in objs:
        if o.get("kind") == kind and o["metadata"]["name"] == name:
            return o
    raise KeyError(f"no {kind} {name!r} in the rendered manifests")


def rbac_objects(*, namespace: str | None = None, name_suffix: str = "") -> list[JSON]:
    """The Namespace, ServiceAccounts, Roles, ClusterRoles, their bindings and the agent's admission
    policy, ready to apply: what a test needs to run a component under exactly the identity and
    permissions the manifests give it. Delete the CLUSTER_SCOPED_KINDS among them afterwards."""
    return select(render(namespace=namespace, name_suffix=name_suffix), *RBAC_KINDS)


def controller_container(objs: Iterable[JSON]) -> JSON:
    """The controller container of the rendered Deployment (pure)."""
    objs = list(objs)
    (dep,) = [o for o in select(objs, "Deployment") if o["metadata"]["name"].startswith(CONTROLLER_DEPLOYMENT)]
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"]
    return dict(c)


def controller_environment(objs: Iterable[JSON], *, pod_name: str, pod_namespace: str) -> dict[str, str]:
    """The controller's environment as the kubelet builds it from the rendered Deployment: its
    ConfigMap (envFrom), then its env with downward-API fields filled in (pure). An e2e test runs
    `virtmigrate-controller` with `controller_container(objs)["args"]` and this environment (plus
    its own overrides, e.g. VIRTMIGRATE_METRICS_ADDRESS=127.0.0.1:0 and a kubeconfig with the
    controller's TokenRequest token) to run it as the manifests configure it."""
    objs = list(objs)
    c = controller_container(objs)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        env.update(find(objs, "ConfigMap", src["configMapRef"]["name"])["data"])
    fields = {"metadata.name": pod_name, "metadata.namespace": pod_namespace}
    for e in c.get("env", []):
        env[e["name"]] = e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def to_yaml(objs: Sequence[JSON]) -> str:
    """A multi-document YAML stream for `kubectl apply -f -` (pure)."""
    return yaml.safe_dump_all(list(objs), sort_keys=False)


def subject(namespace: str, service_account: str) -> str:
    """The user name a ServiceAccount's token authenticates as (pure)."""
    return f"system:serviceaccount:{namespace}:{service_account}"
