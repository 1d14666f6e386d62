"""List/watch of one resource (optionally one namespace and selectors): the reflector's source.

`ListerWatcher` is the seam: the informer's reflector consumes it; `KubeListerWatcher` feeds
it from the API server through `KubeClient` (raw JSON, any resource including CRDs), and
unit tests feed it from a fake. A watch is a `WatchStream`: iterate it for events, and call
`stop()` from any thread to end it (the reflector does so on shutdown, which is why this
module opens the stream itself instead of using the generator `KubeClient.watch`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import urllib3

from virtmigrate import errors
from virtmigrate.kube.client import JSON, KubeClient, WatchEvent, _error_for
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
                 label_selector: str | None = None, field_selector: str | None = None) -> None:
        self.client = client
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
        return _KubeWatch(self, resource_version, timeout_seconds, allow_bookmarks)


class _KubeWatch:
    """One open watch request. The HTTP request is sent when iteration starts."""

    def __init__(self, lw: KubeListerWatcher, resource_version: str, timeout_seconds: int,
                 allow_bookmarks: bool) -> None:
        self._lw = lw
        self._query: dict[str, Any] = {
            "watch": True, "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": allow_bookmarks, "labelSelector": lw.label_selector,
            "fieldSelector": lw.field_selector}
        self._timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._resp: urllib3.BaseHTTPResponse | None = None
        self._stopped = False

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            resp = self._resp
        if resp is not None:
            # shutdown() unblocks a read in progress in the iterating thread; a closed one has none
            with contextlib.suppress(OSError, AttributeError):
                resp.shutdown()

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._stopped:
            return
        c = self._lw.client
        path = self._lw.resource.path(self._lw.namespace)
        try:
            resp = c._pool.request(
                "GET", c.host + path + c._url_query(self._query), headers=c._headers(None),
                preload_content=False,
                timeout=urllib3.Timeout(connect=10, read=self._timeout_seconds + 30))
        except urllib3.exceptions.HTTPError as e:
            raise errors.ServerError(f"WATCH {path}: {e}") from e
        with self._lock:
            self._resp = resp
            stopped = self._stopped
        try:
            if stopped:
                return
            if resp.status >= 300:
                data = resp.read()
                try:
                    payload: Any = json.loads(data)
                except ValueError:
                    payload = data.decode(errors="replace")
                raise _error_for(resp.status, payload, "WATCH", path)
            try:
                yield from KubeClient._decode_stream(resp, path)
            except errors.ServerError:
                if not self._stopped:
                    raise
                # stop() broke the stream on purpose: end quietly
        finally:
            resp.close()
