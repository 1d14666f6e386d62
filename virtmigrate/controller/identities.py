"""The identities our pods run under, made by the controller in every namespace it creates pods in.

Launcher pods run as ServiceAccount `virtmigrate-launcher` (ClusterRole virtmigrate-launcher: patch its own
pod's domain report, narrowed by the admission policy in manifests/launcher-policy.yaml); agent pods as
`virtmigrate-agent` (ClusterRole virtmigrate-agent: its Migration's status.progress, narrowed by
manifests/agent-policy.yaml). Users set up nothing per namespace: before the first pod of a namespace,
the controller creates both ServiceAccounts and their RoleBindings (AlreadyExists is normal).

Called by: the VM controller and the migration executor, before they create a pod. Memory: the set of
namespaces already ensured by this process; a restart starts empty and ensures again (idempotent).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

from virtmigrate import errors
from virtmigrate.kube.resources import ROLEBINDINGS, SERVICEACCOUNTS

LAUNCHER_IDENTITY = "virtmigrate-launcher"
AGENT_IDENTITY = "virtmigrate-agent"
IDENTITIES = (LAUNCHER_IDENTITY, AGENT_IDENTITY)  # each: a ServiceAccount, a RoleBinding, a ClusterRole


class Creator(Protocol):
    def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]: ...


def identity_objects(namespace: str, name: str) -> list[tuple[Any, dict[str, Any]]]:
    """The ServiceAccount `name` and its RoleBinding to ClusterRole `name` in `namespace` (pure)."""
    labels = {"app.kubernetes.io/part-of": "virtmigrate"}
    return [
        (SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": name, "namespace": namespace, "labels": labels}}),
        (ROLEBINDINGS, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": name, "namespace": namespace, "labels": labels},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}),
    ]


class Identities:
    """Ensures the pods' identities exist in a namespace, once per namespace and process. Thread-safe."""

    def __init__(self, client: Creator) -> None:
        self._client = client
        self._done: set[str] = set()   # namespaces whose identities exist (or existed) as far as we know
        self._lock = threading.Lock()

    def ensure(self, namespace: str) -> None:
        """Create what is missing; raises the API's error (e.g. Forbidden) so the caller's sync retries."""
        with self._lock:
            if namespace in self._done:
                return
        for name in IDENTITIES:
            for res, obj in identity_objects(namespace, name):
                with contextlib.suppress(errors.AlreadyExists):  # made by us earlier, or by an admin
                    self._client.create(res, obj, namespace)
        with self._lock:
            self._done.add(namespace)

    def forget(self, namespace: str) -> None:
        """The namespace's identities may be gone (e.g. a pod was rejected for its ServiceAccount)."""
        with self._lock:
            self._done.discard(namespace)
