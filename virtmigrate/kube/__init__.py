"""The only package that talks HTTP to the API server.

`KubeClient` speaks raw JSON; its configuration and authentication (kubeconfig or in-cluster) come from
virtmigrate.kube.config for static ones and the official client's loaders for the rest; every HTTP failure
is mapped once to virtmigrate.errors.
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
