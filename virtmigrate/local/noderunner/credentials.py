"""A pod's service-account identity: a bound token from the TokenRequest API, written as a kubeconfig.

Called by podworker.py before a pod's first container starts; the container gets KUBECONFIG pointing at
`<pod dir>/kubeconfig`, so whatever it does through the API is authorised by RBAC for its service account,
as with the kubelet's projected token volume. The token is bound to the pod (deleting the pod invalidates
it) and lives 24 hours; the local runner does not rotate it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from virtmigrate import errors
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import SERVICEACCOUNTS

TOKEN_SECONDS = 24 * 3600


def wants_token(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return spec.get("automountServiceAccountToken") is not False


def request_token(client: KubeClient, pod: Mapping[str, Any], *, audience: str) -> str | None:
    """A token for the pod's service account bound to the pod; None when the pod names no account.

    The local API server runs without the ServiceAccount admission plugin, so a pod that names no account
    keeps an empty `spec.serviceAccountName` and gets no token volume: a kubelet would mount no token, and
    the API refuses to bind a `default` token to such a pod (its account name differs). Raises NotFound
    for a named account that does not exist."""
    meta = pod.get("metadata") or {}
    sa = (pod.get("spec") or {}).get("serviceAccountName") or ""
    if not sa:
        return None  # the pod runs without API credentials
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": TOKEN_SECONDS,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"),
                                        "uid": meta.get("uid")}}}
    try:
        out = client.request("POST", SERVICEACCOUNTS.path(meta.get("namespace"), sa, "token"), body=body)
    except errors.NotFound:
        if sa == "default":
            return None  # an explicit `default` before the ServiceAccount controller made it: no credentials
        raise
    return str(out["status"]["token"])


def write_kubeconfig(pod_dir: Path, *, server: str, ca_file: Path, token: str, namespace: str) -> Path:
    """Write the token, CA and namespace (as the projected volume has them) and a kubeconfig using them."""
    sa_dir = pod_dir / "serviceaccount"
    sa_dir.mkdir(parents=True, exist_ok=True)
    (sa_dir / "token").write_text(token)
    (sa_dir / "namespace").write_text(namespace)
    (sa_dir / "ca.crt").write_bytes(ca_file.read_bytes())
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "local", "cluster": {"server": server,
                                                    "certificate-authority": str(sa_dir / "ca.crt")}}],
        "users": [{"name": "serviceaccount", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "serviceaccount",
                                                 "namespace": namespace}}],
    }
    path = pod_dir / "kubeconfig"
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
    return path
