"""Least privilege, checked by the real API server's RBAC authorizer through `kubectl auth can-i`.

For each component's ServiceAccount (manifests/serviceaccounts.yaml, bound in manifests/rbac.yaml):
every verb the component's code calls is allowed, and a list of dangerous verbs is denied. Two
static checks keep the matrix honest: the rendered rules grant exactly the matrix (nothing more),
and every KubeClient call found in the component's package (an AST scan) is in the matrix.
"""

from __future__ import annotations

import ast
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster, Kubectl
from tests.manifests_support import (
    AGENT_SA,
    CLUSTER_SCOPED_KINDS,
    CONTROLLER_SA,
    LAUNCHER_SA,
    REPO,
    rbac_objects,
    render,
    select,
    subject,
    to_yaml,
)


@dataclass(frozen=True)
class Access:
    """One request a component makes: `verb` on `resource` (plural.group, "" group for core)."""

    verb: str
    resource: str
    subresource: str = ""
    scope: str = "workload"  # "workload": any namespace with VMs; "install": the controller's own namespace
    name: str = ""           # one object only (a rule with resourceNames)

    @property
    def id(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb}-{res}{'=' + self.name if self.name else ''}@{self.scope}"


def _each(verbs: str, resource: str, subresource: str = "", scope: str = "workload") -> list[Access]:
    return [Access(v, resource, subresource, scope) for v in verbs.split()]


# What each component calls (grep KubeClient calls and informers in its package; test_code_calls_
# are_in_the_matrix checks the first part of that automatically).
ALLOWED: dict[str, list[Access]] = {
    CONTROLLER_SA: [
        *_each("get list watch patch", "migrations.kubevirt.io"),   # informer; finalizer by merge patch
        *_each("create delete", "migrations.kubevirt.io"),          # evacuations; the history limit deletes
        *_each("patch", "migrations.kubevirt.io", "status"),
        *_each("update", "migrations.kubevirt.io", "finalizers"),   # blockOwnerDeletion on agent pods
        *_each("get list watch", "vms.kubevirt.io"),
        *_each("patch", "vms.kubevirt.io", "status"),
        *_each("update", "vms.kubevirt.io", "finalizers"),          # blockOwnerDeletion on launcher pods
        *_each("get list watch create delete", "pods"),
        *_each("patch", "pods"),                                    # agent-outcome finalizer (controller-policy)
        *_each("get list watch", "nodes"),
        *_each("create", "serviceaccounts"),                        # the pods' identities (identities.py) ...
        *_each("create", "rolebindings.rbac.authorization.k8s.io"),  # ... bound to exactly these two roles:
        Access("bind", "clusterroles.rbac.authorization.k8s.io", name="virtmigrate-agent"),
        Access("bind", "clusterroles.rbac.authorization.k8s.io", name="virtmigrate-launcher"),
        *_each("patch", "nodes", "status"),                         # the evacuation condition
        *_each("list watch create delete", "poddisruptionbudgets.policy"),  # a budget per migrating VM
        *_each("list watch", "migrationpolicies.migrations.kubevirt.io"),  # a Migration's defaults
        *_each("list watch", "namespaces"),                         # the policies' namespaceSelector
        *_each("create patch", "events"),
        *_each("get create update", "leases.coordination.k8s.io", scope="install"),
    ],
    AGENT_SA: [
        *_each("patch", "migrations.kubevirt.io", "status", scope="install"),
        *_each("get watch", "migrations.kubevirt.io", scope="install"),  # it waits for TargetReady (gate.py)
    ],
    LAUNCHER_SA: [],
}

# Granted to the controller on purpose though dangerous for anyone else: patching pods (narrowed to their
# finalizers by manifests/controller-policy.yaml) and creating RoleBindings (only to the two ClusterRoles
# it may bind: RBAC refuses any other binding that would grant more than the controller holds).
CONTROLLER_EXCEPTIONS = {"patch-pods", "create-rolebindings.rbac.authorization.k8s.io"}

# Denied to every component, in both namespaces.
DANGEROUS: list[Access] = [
    *_each("update delete", "migrations.kubevirt.io", "status"),
    *_each("update patch delete", "vms.kubevirt.io"),          # a VM's spec is the user's
    *_each("update patch", "pods"),
    *_each("create", "events.events.k8s.io"),
    *_each("get list watch", "secrets"),
    *_each("create", "pods", "exec"),
    *_each("create", "pods", "attach"),
    *_each("create", "pods", "portforward"),
    *_each("update patch delete", "nodes"),
    *_each("get", "nodes", "proxy"),
    *_each("create", "serviceaccounts", "token"),
    *_each("create update", "rolebindings.rbac.authorization.k8s.io"),
    *_each("bind escalate", "clusterroles.rbac.authorization.k8s.io"),
    *_each("create", "customresourcedefinitions.apiextensions.k8s.io"),
    Access("*", "*"),
    Access("create", "*"),
    Access("delete", "*"),
]
DANGEROUS += [Access(a.verb, a.resource, a.subresource, "install") for a in DANGEROUS]

# Denied to the agent beyond DANGEROUS: it reports progress and does nothing else.
AGENT_DENIED: list[Access] = [
    *_each("create delete", "pods"),
    *_each("update delete", "migrations.kubevirt.io"),
    *_each("update", "migrations.kubevirt.io", "status", scope="install"),
    *_each("patch", "migrations.kubevirt.io", "status"),  # not outside its own namespace
    *_each("patch", "vms.kubevirt.io", "status"),
]


@dataclass(frozen=True)
class Install:
    kubectl: Kubectl
    namespace: str   # where the manifests are installed ("install" scope)
    workload: str    # another namespace, where VMs and Migrations live ("workload" scope)
    suffix: str


@pytest.fixture(scope="module")
def install(cluster: Cluster, crds: None) -> Iterator[Install]:
    """The manifests' ServiceAccounts and RBAC applied in a fresh namespace, with unique names.
    The CRDs are installed first: `kubectl auth can-i` resolves resource names through discovery."""
    k = Kubectl(cluster.kubeconfig)
    tag = uuid.uuid4().hex[:6]
    ns, workload, suffix = f"t-rbac-{tag}", f"t-rbac-workload-{tag}", f"-{tag}"
    objs = rbac_objects(namespace=ns, name_suffix=suffix)
    k("create", "namespace", workload, namespaced=False)
    k("apply", "-f", "-", input=to_yaml(objs), namespaced=False)
    try:
        yield Install(k, ns, workload, suffix)
    finally:
        for o in select(objs, *CLUSTER_SCOPED_KINDS):
            k.run("delete", o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found",
                  check=False, namespaced=False)
        for n in (ns, workload):
            k.run("delete", "namespace", n, "--wait=false", check=False, namespaced=False)


def can_i(inst: Install, sa: str, a: Access) -> bool:
    ns = inst.namespace if a.scope == "install" else inst.workload
    args = ["auth", "can-i", a.verb, a.resource, f"--namespace={ns}",
            f"--as={subject(inst.namespace, sa + inst.suffix)}"]
    if a.name:
        args[3] = f"{a.resource}/{a.name}"
    if a.subresource:
        args.append(f"--subresource={a.subresource}")
    proc = inst.kubectl.run(*args, check=False, namespaced=False)
    answer = proc.stdout.strip()
    if answer not in ("yes", "no"):
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return answer == "yes"


def _cases(sas: list[str], accesses: list[Access]) -> list[object]:
    return [pytest.param(sa, a, id=f"{sa}-{a.id}") for sa in sas for a in accesses]


@pytest.mark.integration
@pytest.mark.parametrize(("sa", "access"), [p for sa, acc in ALLOWED.items() for p in _cases([sa], acc)])
def test_every_verb_a_component_uses_is_allowed(install: Install, sa: str, access: Access) -> None:
    assert can_i(install, sa, access), f"{sa} may not {access.id}"


@pytest.mark.integration
@pytest.mark.parametrize(("sa", "access"), [
    *[c for c in _cases(list(ALLOWED), DANGEROUS)
      if not (c.values[0] == CONTROLLER_SA and c.values[1].id.rsplit("@", 1)[0] in CONTROLLER_EXCEPTIONS)],
    *_cases([AGENT_SA], AGENT_DENIED)])
def test_dangerous_verbs_are_denied(install: Install, sa: str, access: Access) -> None:
    assert not can_i(install, sa, access), f"{sa} may {access.id}"


@pytest.mark.integration
def test_launcher_may_do_nothing(install: Install) -> None:
    """The manifests bind the launcher's identity to nothing (the controller binds its one rule, patch of its
    own pod's report, per namespace): not even reading its own VM."""
    for a in [*_each("get list watch", "vms.kubevirt.io"), *_each("get", "pods"),
              *_each("patch", "migrations.kubevirt.io", "status", scope="install")]:
        assert not can_i(install, LAUNCHER_SA, a), a.id


@pytest.fixture(scope="module")
def workload_agent(install: Install) -> str:
    """docs/install.md's two commands, run in the workload namespace; the agent's user name."""
    k, ns, sfx = install.kubectl, install.workload, install.suffix
    k("create", "serviceaccount", AGENT_SA + sfx, f"--namespace={ns}", namespaced=False)
    k("create", "rolebinding", AGENT_SA + sfx, f"--namespace={ns}", f"--clusterrole={AGENT_SA}{sfx}",
      f"--serviceaccount={ns}:{AGENT_SA}{sfx}", namespaced=False)
    return subject(ns, AGENT_SA + sfx)


@pytest.mark.integration
def test_progress_reporting_is_granted_per_namespace_as_documented(install: Install, workload_agent: str) -> None:
    """docs/install.md's two commands let a namespace's agent report progress there, and only there."""
    k, ns, sfx = install.kubectl, install.workload, install.suffix

    def agent_can(verb: str, namespace: str, subresource: str = "status") -> bool:
        args = ["auth", "can-i", verb, "migrations.kubevirt.io", f"--subresource={subresource}",
                f"--namespace={namespace}", f"--as={subject(ns, AGENT_SA + sfx)}"]
        return k.run(*args, check=False, namespaced=False).stdout.strip() == "yes"

    assert agent_can("patch", ns)
    assert not agent_can("patch", install.namespace)
    assert not agent_can("update", ns)
    assert agent_can("get", ns, subresource="") and agent_can("watch", ns, subresource="")  # its Migration
    assert not agent_can("list", ns, subresource="") and not agent_can("get", install.namespace, subresource="")


AGENT_POD = "virt-migration-m1-abcde"


@pytest.mark.integration
def test_agent_may_report_only_its_own_progress(install: Install, workload_agent: str, crds: None,
                                                cluster: Cluster) -> None:
    """The admission policy narrows the agent's `patch migrations/status`: status.progress only, and
    with a pod-bound token (what a kubelet gives a pod) only on the Migration whose status.agentPod
    is that pod. The requests are the agent's own: a merge patch of the status subresource through
    KubeClient, authenticated by tokens from the TokenRequest API."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    from virtmigrate import errors
    from virtmigrate.kube import KubeClient
    from virtmigrate.kube.resources import MIGRATIONS

    k, ns, sa = install.kubectl, install.workload, AGENT_SA + install.suffix
    k("create", "-f", "-", f"--namespace={ns}", namespaced=False, input=json.dumps(
        {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": {"name": "m1"},
         "spec": {"selector": {"name": "vm1"}}}))
    k("patch", "migration", "m1", f"--namespace={ns}", "--subresource=status", "--type=merge", "-p",
      json.dumps({"status": {"phase": "Running", "agentPod": AGENT_POD}}), namespaced=False)
    for pod in (AGENT_POD, "virt-migration-other-12345"):  # no kubelet runs them; tokens bind to them
        k("create", "-f", "-", f"--namespace={ns}", namespaced=False, input=json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
             "spec": {"serviceAccountName": sa, "automountServiceAccountToken": False,
                      "containers": [{"name": "agent", "image": "virtmigrate/agent:0.1.0"}]}}))

    cfg = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]

    def client_for(pod: str | None, account: str = sa, namespace: str = ns) -> KubeClient:
        bound = ["--bound-object-kind=Pod", f"--bound-object-name={pod}"] if pod else []
        token = k("create", "token", account, f"--namespace={namespace}", *bound, namespaced=False).strip()
        return KubeClient.from_token(cfg.host, token, ca_file=cfg.ssl_ca_cert)

    def patch(c: KubeClient, status: dict[str, object]) -> str:
        """'' when allowed, else the API server's message."""
        try:
            c.patch(MIGRATIONS, "m1", {"status": status}, ns, subresource="status")
        except (errors.Invalid, errors.Forbidden) as e:
            return str(e) or "refused"
        return ""

    agent, other, unbound = client_for(AGENT_POD), client_for("virt-migration-other-12345"), client_for(None)
    # The API server compiles a new policy asynchronously: wait until ours is in force (bounded).
    deadline = time.monotonic() + 60
    while not (denied := patch(agent, {"phase": "Succeeded"})) and time.monotonic() < deadline:
        k("patch", "migration", "m1", f"--namespace={ns}", "--subresource=status", "--type=merge", "-p",
          json.dumps({"status": {"phase": "Running"}}), namespaced=False)
        time.sleep(0.5)
    assert "may change status.progress and status.agentOutcome only" in denied, denied

    assert patch(agent, {"progress": {"percent": 40, "percentText": "40%"}}) == ""
    assert "may report progress only for the Migration" in patch(other, {"progress": {"percent": 41}})
    assert patch(unbound, {"progress": {"percent": 42}}) == ""  # not bound to a pod: the field rule only
    assert "may change status.progress and status.agentOutcome only" in patch(agent, {"result": {"outcome": "x"}})
    # its claim when its job ended: set once, never changed (the controller checks it against the nodes)
    assert patch(agent, {"agentOutcome": {"exitCode": 0, "terminationMessage": "{}"}}) == ""
    assert "may set status.agentOutcome once" in patch(agent, {"agentOutcome": {"exitCode": 23}})

    controller = client_for(None, CONTROLLER_SA + install.suffix, install.namespace)
    assert patch(controller, {"phase": "Succeeded", "reason": "Migrated"}) == ""
    got = json.loads(k("get", "migration", "m1", f"--namespace={ns}", "-o", "json", namespaced=False))
    assert got["status"]["phase"] == "Succeeded"
    assert got["status"]["progress"]["percent"] == 42


@pytest.mark.integration
def test_the_controller_client_authenticates_as_its_service_account(
        install: Install, cluster: Cluster, tmp_path: Path) -> None:
    """With a kubeconfig holding the controller's ServiceAccount token (what the official client's
    loaders also produce in a pod), KubeClient speaks as that ServiceAccount, not as anonymous: the
    RBAC above is what the controller actually gets."""
    from virtmigrate.kube import KubeClient

    sa = CONTROLLER_SA + install.suffix
    token = install.kubectl("create", "token", sa, f"--namespace={install.namespace}", namespaced=False).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    (cl,) = admin["clusters"]
    kubeconfig = tmp_path / "controller.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cl], "current-context": "controller",
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "controller", "context": {"cluster": cl["name"], "user": "controller"}}]}))
    review = KubeClient.from_kubeconfig(str(kubeconfig)).request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review["status"]["userInfo"]["username"] == subject(install.namespace, sa)


# ---------------------------------------------------------------------------------------------
# Static: the manifests grant exactly the matrix, and the matrix covers the code


def _granted(sa: str) -> set[tuple[str, str, str, str]]:
    """(verb, resource, subresource, scope) granted to `sa` by the rendered base (pure on the render)."""
    objs = render()
    roles = {(o["kind"], o["metadata"]["name"]): o for o in select(objs, "Role", "ClusterRole")}
    out: set[tuple[str, str, str, str]] = set()
    for b in select(objs, "RoleBinding", "ClusterRoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in b["subjects"]):
            continue
        role = roles[(b["roleRef"]["kind"], b["roleRef"]["name"])]
        scope = "install" if b["kind"] == "RoleBinding" else "workload"
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    plural, _, sub = res.partition("/")
                    full = f"{plural}.{group}" if group else plural
                    out |= {(v, full, sub, scope) for v in rule["verbs"]}
    return out


def test_the_agent_policy_guards_every_status_field_but_progress() -> None:
    """A status field added to the CRD must be added to the policy, or the agent could write it. The agent's
    own two: progress (free) and agentOutcome (set once, by the second rule)."""
    crd = yaml.safe_load((REPO / "manifests" / "crds" / "migrations.kubevirt.io.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    own = {"progress", "agentOutcome"}
    fields = set(version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]) - own
    (policy,) = [p for p in select(render(), "ValidatingAdmissionPolicy")
                 if p["metadata"]["name"].startswith("virtmigrate-agent-progress-only")]
    first, once = (v["expression"] for v in policy["spec"]["validations"][:2])
    for f in sorted(fields):
        assert f"object.?status.?{f} == oldObject.?status.?{f}" in first, f"status.{f} is not guarded"
    assert not any(f in first for f in own)
    assert "!has(oldObject.status.agentOutcome)" in once


def test_no_rule_uses_a_wildcard() -> None:
    for role in select(render(), "Role", "ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
                assert not any("*" in x for x in rule.get(field, [])), (role["metadata"]["name"], rule)


@pytest.mark.parametrize("sa", list(ALLOWED))
def test_manifests_grant_exactly_the_matrix(sa: str) -> None:
    want = {(a.verb, a.resource, a.subresource, a.scope) for a in ALLOWED[sa]}
    assert _granted(sa) == want


# KubeClient method -> (verb, default subresource)
_CLIENT_VERBS = {
    "get": ("get", ""), "list": ("list", ""), "list_all": ("list", ""), "watch": ("watch", ""),
    "open_watch": ("watch", ""),
    "create": ("create", ""), "replace": ("update", ""), "update_status": ("update", "status"),
    "patch": ("patch", ""), "delete": ("delete", ""),
}
_RESOURCES = {
    "PODS": "pods", "NODES": "nodes", "EVENTS": "events", "CONFIGMAPS": "configmaps",
    "SERVICEACCOUNTS": "serviceaccounts", "NAMESPACES": "namespaces",
    "LEASES": "leases.coordination.k8s.io", "MIGRATIONS": "migrations.kubevirt.io", "VMS": "vms.kubevirt.io",
    "PDBS": "poddisruptionbudgets.policy", "MIGRATION_POLICIES": "migrationpolicies.migrations.kubevirt.io",
}
COMPONENT_PACKAGES = {CONTROLLER_SA: "controller", AGENT_SA: "agent", LAUNCHER_SA: "launcher"}

# Calls the code makes knowing they may be refused: it suppresses Forbidden and carries on.
TOLERATED_FORBIDDEN: dict[str, set[tuple[str, str, str]]] = {
    # cmd/controller.py creates the Lease's namespace for the local cluster; installs create it.
    CONTROLLER_SA: {("create", "namespaces", "")},
}


def code_accesses(*paths: Path) -> set[tuple[str, str, str]]:
    """(verb, resource, subresource) of every `<x>.<method>(<RESOURCE>, ...)` call in `paths` (files
    or packages)
    whose first argument is one of virtmigrate.kube.resources' constants, plus list and watch for any
    other call that passes such a constant (informers, listers); `create_token` as serviceaccounts/token."""
    found: set[tuple[str, str, str]] = set()
    files = [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else [])]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if method == "create_token":
                found.add(("create", "serviceaccounts", "token"))
                continue
            args = [*node.args, *(k.value for k in node.keywords)]
            names = [a.id if isinstance(a, ast.Name) else a.attr if isinstance(a, ast.Attribute) else ""
                     for a in args]
            res = [_RESOURCES[n] for n in names if n in _RESOURCES]
            if not res:
                continue
            first = names[0] if names else ""
            if method in _CLIENT_VERBS and first in _RESOURCES:
                verb, sub = _CLIENT_VERBS[method]
                for k in node.keywords:
                    if k.arg == "subresource" and isinstance(k.value, ast.Constant):
                        sub = str(k.value.value)
                found.add((verb, _RESOURCES[first], sub))
            else:
                found |= {(v, r, "") for r in res for v in ("list", "watch")}
    return found


@pytest.mark.parametrize("sa", list(COMPONENT_PACKAGES))
def test_code_calls_are_in_the_matrix(sa: str) -> None:
    """Every KubeClient call of the component's package is allowed by the matrix (and so, by the
    test above, by the manifests). A new call with a new verb fails here until RBAC grants it."""
    name = COMPONENT_PACKAGES[sa]
    package = REPO / "virtmigrate" / name
    if not package.is_dir():
        pytest.fail(f"{package} does not exist: the component has no code to check")
    allowed = {(a.verb, a.resource, a.subresource) for a in ALLOWED[sa]} | TOLERATED_FORBIDDEN.get(sa, set())
    missing = code_accesses(package, REPO / "virtmigrate" / "cmd" / f"{name}.py") - allowed
    assert not missing, f"{sa} calls these but RBAC does not grant them: {sorted(missing)}"


def test_the_scanner_finds_calls() -> None:
    """The AST scan is not vacuous: it finds the leader election's Lease calls and pod creation."""
    found = code_accesses(REPO / "virtmigrate" / "controller", REPO / "virtmigrate" / "cmd" / "controller.py")
    assert ("get", "leases.coordination.k8s.io", "") in found
    assert ("update", "leases.coordination.k8s.io", "") in found
    assert ("create", "pods", "") in found

