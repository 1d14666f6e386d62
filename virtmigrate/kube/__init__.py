"""The only package that talks HTTP to the API server.

`KubeClient` speaks raw JSON over the official client's configuration and authentication
(kubeconfig or in-cluster); every HTTP failure is mapped once to virtmigrate.errors.
"""

from virtmigrate.kube.client import KubeClient, WatchEvent
from virtmigrate.kube.resources import (
    CONFIGMAPS,
    EVENTS,
    LEASES,
    MIGRATIONS,
    NODES,
    PODS,
    SERVICEACCOUNTS,
    VMS,
    Resource,
)

__all__ = [
    "CONFIGMAPS",
    "EVENTS",
    "LEASES",
    "MIGRATIONS",
    "NODES",
    "PODS",
    "SERVICEACCOUNTS",
    "VMS",
    "KubeClient",
    "Resource",
    "WatchEvent",
]
