"""List/watch of one resource (optionally one namespace and selectors): the reflector's source.

`ListerWatcher` is the seam: the informer's reflector consumes it; `KubeListerWatcher` feeds
it from the API server through `KubeClient` (raw JSON, any resource including CRDs), and
unit tests feed it from a fake. A watch is a `WatchStream`: iterate it for events, and call
`stop()` from any thread to end it (the reflector does so on shutdown); `KubeClient.open_watch`
returns one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from virtmigrate.kube.client import JSON, KubeClient, WatchEvent
from virtmigrate.kube.resources import Resource


class WatchStream(Protocol):
    """Events of one watch, until the server ends it, it fails (KubeError) or `stop()` is called."""

    def __iter__(self) -> Iterator[WatchEvent]: ...

    def stop(self) -> None:
        """End the stream from any thread; iteration then ends without an error."""


class ListerWatcher(Protocol):
    """LIST pages and WATCH streams of one collection (resource, namespace, selectors).

    Errors are virtmigrate.errors.KubeError subclasses; `Gone` means the resourceVersion
    (or continue token) is too old and the caller must list again from scratch.
    """

    def list(self, *, limit: int | None = None, continue_: str | None = None,
             resource_version: str | None = None) -> JSON:
        """One page: a dict with `items` and `metadata.resourceVersion` / `metadata.continue`."""

    def watch(self, *, resource_version: str, timeout_seconds: int,
              allow_bookmarks: bool = True) -> WatchStream:
        """Open a watch from `resource_version` that the server ends after `timeout_seconds`."""


class KubeListerWatcher:
    """A `ListerWatcher` on the API server."""

    def __init__(self, client: KubeClient, resource: Resource, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 drop_managed_fields: bool = False) -> None:
        """`drop_managed_fields`: watched objects come without `metadata.managedFields` (for a consumer that
        drops them anyway: decoding them is most of a watch event's cost)."""
        self.client = client
        self.drop_managed_fields = drop_managed_fields
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector

    def list(self, *, limit: int | None = None, continue_: str | None = None,
             resource_version: str | None = None) -> JSON:
        return self.client.list(self.resource, self.namespace, label_selector=self.label_selector,
                                field_selector=self.field_selector, limit=limit, continue_=continue_,
                                resource_version=resource_version)

    def watch(self, *, resource_version: str, timeout_seconds: int,
              allow_bookmarks: bool = True) -> WatchStream:
        return self.client.open_watch(self.resource, self.namespace, resource_version=resource_version,
                                      label_selector=self.label_selector, field_selector=self.field_selector,
                                      timeout_seconds=timeout_seconds, allow_bookmarks=allow_bookmarks,
                                      drop_managed_fields=self.drop_managed_fields)
