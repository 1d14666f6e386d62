"""A raw-JSON Kubernetes client over urllib3, configured by the official client's loaders.

Generated model classes cost more to build than the JSON they wrap (see bench/), and a
controller reads a few fields of each object, so objects stay `dict`s. Every non-2xx answer
and every transport failure is mapped here, once, to the tree in virtmigrate.errors; nothing
above this module sees urllib3's exceptions.

Thread-safe: one client (one connection pool) is shared by all informers and workers.

Requests (everything but watches) go over a small pool of kept-alive HTTP/1.1 connections that
share one TLS context, each request one write and its answer read by `_Connection`: urllib3's
per-request URL parsing, pool-key normalisation and liveness poll, and http.client's header
parsing, cost more CPU than the request itself on a busy controller. Watches, which stream,
keep urllib3.
"""

from __future__ import annotations

import builtins
import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from virtmigrate import errors
from virtmigrate.kube.resources import SERVICEACCOUNTS, Resource

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK, and the object."""

    type: str
    object: JSON


def _error_for(status: int, body: Any, method: str, path: str) -> errors.KubeError:
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    message = body.get("message", "") if isinstance(body, dict) else str(body)[:500]
    text = f"{method} {path}: {status} {reason}: {message}".strip()
    cls: type[errors.KubeError]
    if status == 404:
        cls = errors.NotFound
    elif status == 409:
        cls = errors.AlreadyExists if reason == "AlreadyExists" else errors.Conflict
    elif status == 410:
        cls = errors.Gone
    elif status in (401, 403):
        cls = errors.Forbidden
    elif status in (400, 422):
        cls = errors.Invalid
    elif status == 429 or status >= 500:
        cls = errors.ServerError
    else:
        cls = errors.KubeError
    return cls(text, status=status, reason=reason, body=body)


class KubeClient:
    """JSON requests to one API server. Build with `from_kubeconfig`, `in_cluster` or `auto`."""

    def __init__(self, configuration: k8s_client.Configuration, *, maxsize: int = 32,
                 request_timeout: float = 30.0) -> None:
        self.host = configuration.host.rstrip("/")
        self._cfg = configuration
        self._timeout = request_timeout
        kwargs: dict[str, Any] = {"maxsize": maxsize, "block": False, "retries": False}
        if self.host.startswith("https"):
            kwargs["cert_reqs"] = "CERT_REQUIRED" if configuration.verify_ssl else "CERT_NONE"
            if configuration.ssl_ca_cert:
                kwargs["ca_certs"] = configuration.ssl_ca_cert
            if configuration.cert_file:
                kwargs["cert_file"] = configuration.cert_file
                kwargs["key_file"] = configuration.key_file
        self._pool = urllib3.PoolManager(**kwargs)
        self._conns = _ConnectionPool(self.host, configuration, maxsize=maxsize)
        self._static_headers: dict[str | None, dict[str, str]] = {}

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None) -> KubeClient:
        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg)
        return cls(cfg)

    @classmethod
    def in_cluster(cls) -> KubeClient:
        cfg = k8s_client.Configuration()
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        return cls(cfg)

    @classmethod
    def from_token(cls, host: str, token: str, *, ca_file: str | None) -> KubeClient:
        """A client for a service-account identity (the node runner hands pods these)."""
        cfg = k8s_client.Configuration()
        cfg.host = host
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.ssl_ca_cert = ca_file
        return cls(cfg)

    @classmethod
    def auto(cls, kubeconfig: str | None = None) -> KubeClient:
        """Kubeconfig when one is named (argument or $KUBECONFIG), else in-cluster, else ~/.kube/config."""
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            return cls.from_kubeconfig(path)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        return cls.from_kubeconfig()

    # --- transport ----------------------------------------------------------------------------

    def _headers(self, content_type: str | None) -> dict[str, str]:
        if self._cfg.refresh_api_key_hook is None:  # the credentials cannot change: compute them once
            cached = self._static_headers.get(content_type)
            if cached is None:
                cached = self._static_headers[content_type] = self._compute_headers(content_type)
            return cached
        return self._compute_headers(content_type)

    def _compute_headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "virtmigrate/0.1"}
        if content_type:
            headers["Content-Type"] = content_type
        if self._cfg.refresh_api_key_hook is not None:
            self._cfg.refresh_api_key_hook(self._cfg)
        # kubernetes 37's loaders store a token under "BearerToken"; older ones (and from_token) under "authorization".
        auth = (self._cfg.get_api_key_with_prefix("authorization")
                or self._cfg.get_api_key_with_prefix("BearerToken"))
        if auth:
            headers["Authorization"] = auth
        return headers

    @staticmethod
    def _url_query(query: Mapping[str, Any] | None) -> str:
        if not query:
            return ""
        items = {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in query.items() if v is not None and v != ""}
        return "?" + urlencode(items) if items else ""

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str | None = None,
                timeout: float | None = None) -> Any:
        """One request; returns the decoded JSON body or raises a mapped KubeError."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            content_type = content_type or "application/json"
        target = self._conns.prefix + path + self._url_query(query)
        status, raw = self._conns.round_trip(method, target, data, self._headers(content_type),
                                             timeout or self._timeout)
        payload: Any = None
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
        if status >= 300:
            raise _error_for(status, payload, method, path)
        return payload

    # --- verbs --------------------------------------------------------------------------------

    def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        out: JSON = self.request("GET", res.path(namespace, name))
        return out

    def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None,
             continue_: str | None = None, resource_version: str | None = None,
             resource_version_match: str | None = None, timeout: float | None = None) -> JSON:
        """One page of a LIST. The caller follows `metadata.continue`."""
        query = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
                 "continue": continue_, "resourceVersion": resource_version,
                 "resourceVersionMatch": resource_version_match}
        out: JSON = self.request("GET", res.path(namespace), query=query, timeout=timeout)
        return out

    def list_all(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                 field_selector: str | None = None, page_size: int = 500) -> builtins.list[JSON]:
        """Every object, following pagination (a convenience for tools and tests)."""
        items: builtins.list[JSON] = []
        cont: str | None = None
        while True:
            page = self.list(res, namespace, label_selector=label_selector,
                             field_selector=field_selector, limit=page_size, continue_=cont)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items

    def create(self, res: Resource, obj: JSON, namespace: str | None = None) -> JSON:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        out: JSON = self.request("POST", res.path(ns), body=obj)
        return out

    def replace(self, res: Resource, obj: JSON, *, subresource: str | None = None) -> JSON:
        """PUT the whole object; fails with Conflict when its resourceVersion is stale."""
        meta = obj["metadata"]
        out: JSON = self.request("PUT", res.path(meta.get("namespace"), meta["name"], subresource),
                                 body=obj)
        return out

    def update_status(self, res: Resource, obj: JSON) -> JSON:
        return self.replace(res, obj, subresource="status")

    def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = MERGE_PATCH) -> JSON:
        out: JSON = self.request("PATCH", res.path(namespace, name, subresource), body=patch,
                                 content_type=patch_type)
        return out

    def delete(self, res: Resource, name: str, namespace: str | None = None, *,
               grace_period_seconds: int | None = None, uid: str | None = None,
               propagation_policy: str | None = None) -> JSON:
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if uid:
            body["preconditions"] = {"uid": uid}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        out: JSON = self.request("DELETE", res.path(namespace, name), body=body)
        return out

    def create_token(self, namespace: str, service_account: str, *, audiences: builtins.list[str] | None = None,
                     expiration_seconds: int = 3600) -> str:
        """A bound service-account token from the TokenRequest API."""
        spec: JSON = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = audiences
        out = self.request("POST", SERVICEACCOUNTS.path(namespace, service_account, "token"),
                           body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                 "spec": spec})
        return str(out["status"]["token"])

    # --- watch --------------------------------------------------------------------------------

    def open_watch(self, res: Resource, namespace: str | None = None, *, resource_version: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   timeout_seconds: int | None = None, allow_bookmarks: bool = True,
                   send_initial_events: bool | None = None) -> Watch:
        """A watch that is sent when iteration starts and that `stop()` ends from any thread."""
        query = {"watch": True, "resourceVersion": resource_version, "labelSelector": label_selector,
                 "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                 "allowWatchBookmarks": allow_bookmarks, "sendInitialEvents": send_initial_events}
        if send_initial_events:
            query["resourceVersionMatch"] = "NotOlderThan"
        return Watch(self, res.path(namespace), query, read_timeout=(timeout_seconds or 300) + 30)

    def watch(self, res: Resource, namespace: str | None = None, **kw: Any) -> Iterator[WatchEvent]:
        """Stream events until the server ends the watch (see `Watch`); closing the generator
        closes the connection."""
        yield from self.open_watch(res, namespace, **kw)


class _Disconnected(Exception):
    """The server closed the connection before any byte of an answer (a kept-alive one gone idle)."""


class _Connection:
    """One kept-alive HTTP/1.1 connection: a request is one `sendall`, the answer is read with a
    buffered reader that understands Content-Length, chunked and read-until-close bodies.
    (http.client parses every answer's headers with the email package: a fifth of a request's CPU.)"""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def round_trip(self, head: bytes, body: bytes | None, timeout: float) -> tuple[int, bytes, bool]:
        """(status, body, keep-alive) of one request whose request line and headers are `head`."""
        self.sock.settimeout(timeout)
        self.sock.sendall(head + body if body else head)
        rfile = self.rfile
        line = rfile.readline(65537)
        if not line:
            raise _Disconnected("server closed the connection")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise http.client.BadStatusLine(repr(line[:100]))
        status = int(parts[1])
        length = -1
        chunked = False
        keep = parts[0] == b"HTTP/1.1"
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise http.client.IncompleteRead(b"")
            name, _, value = h.partition(b":")
            n = name.strip().lower()
            if n == b"content-length":
                length = int(value)
            elif n == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif n == b"connection":
                v = value.strip().lower()
                keep = v != b"close" and (keep or v == b"keep-alive")
        if status in (204, 304) or 100 <= status < 200:
            return status, b"", keep
        if chunked:
            chunks = []
            while True:
                size = int(rfile.readline(65537).split(b";", 1)[0], 16)
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunk = rfile.read(size)
                if len(chunk) != size:
                    raise http.client.IncompleteRead(chunk, size - len(chunk))
                chunks.append(chunk)
                rfile.read(2)
            return status, b"".join(chunks), keep
        if length >= 0:
            data = rfile.read(length)
            if len(data) != length:
                raise http.client.IncompleteRead(data, length - len(data))
            return status, data, keep
        return status, rfile.read(), False  # delimited by the end of the connection


class _ConnectionPool:
    """Idle kept-alive HTTP(S) connections to one server, taken and returned by request threads."""

    def __init__(self, host: str, cfg: k8s_client.Configuration, *, maxsize: int) -> None:
        parts = urlsplit(host)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = f"Host: {parts.netloc}\r\n"
        self.prefix = parts.path.rstrip("/")
        self._maxsize = maxsize
        self._idle: builtins.list[_Connection] = []
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        if self._https:
            ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
            if not cfg.verify_ssl:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
            self._ctx = ctx

    def _new(self, timeout: float) -> _Connection:
        sock = socket.create_connection((self._host, self._port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _head(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
        return f"{method} {target} HTTP/1.1\r\n{self._host_header}{fields}{length}\r\n".encode("latin-1")

    def round_trip(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
                   timeout: float) -> tuple[int, bytes]:
        """Send one request and read the whole answer: (status, body). A kept-alive connection the
        server closed while idle fails before any byte of an answer: that one is retried once, fresh."""
        head = self._head(method, target, headers, body)
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        for attempt in (0, 1):
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._new(timeout)
                status, data, keep = conn.round_trip(head, body, timeout)
            except (_Disconnected, BrokenPipeError, ConnectionResetError) as e:
                if conn is not None:
                    conn.close()
                conn = None
                if reused and attempt == 0:
                    continue
                raise errors.ServerError(f"{method} {target}: {e}") from e
            except (OSError, ValueError, http.client.HTTPException) as e:
                if conn is not None:
                    conn.close()
                raise errors.ServerError(f"{method} {target}: {e}") from e
            if keep:
                with self._lock:
                    if len(self._idle) < self._maxsize:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()
            return status, data
        raise AssertionError("unreachable")


class Watch:
    """One watch request. Iterating sends it and yields events until the server ends the watch.

    Raises Gone on a 410 (in the status line or as an ERROR event), WatchError on any other ERROR
    event, ServerError on a broken stream — except when `stop()` broke it, which ends iteration quietly.
    The read timeout (the server's timeout plus a margin) catches a dead peer.
    """

    def __init__(self, client: KubeClient, path: str, query: Mapping[str, Any], *, read_timeout: float) -> None:
        self._client = client
        self._path = path
        self._query = query
        self._read_timeout = read_timeout
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
        c, path = self._client, self._path
        try:
            resp = c._pool.request("GET", c.host + path + c._url_query(self._query), headers=c._headers(None),
                                   preload_content=False,
                                   timeout=urllib3.Timeout(connect=10, read=self._read_timeout))
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
                yield from _decode_stream(resp, path)
            except errors.ServerError:
                if not self._stopped:
                    raise
                # stop() broke the stream on purpose: end quietly
        finally:
            resp.close()  # a watch connection is never reused: closing also stops a half-read stream


def _decode_stream(resp: urllib3.BaseHTTPResponse, path: str) -> Iterator[WatchEvent]:
    buf = b""
    try:
        for chunk in resp.stream(64 * 1024, decode_content=True):
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if not line.strip():
                    continue
                ev = json.loads(line)
                etype, obj = ev.get("type", ""), ev.get("object") or {}
                if etype == "ERROR":
                    code = obj.get("code", 0)
                    cls = errors.Gone if code == 410 else errors.WatchError
                    raise cls(f"WATCH {path}: {obj.get('message', obj)}", status=code,
                              reason=obj.get("reason", ""), body=obj)
                yield WatchEvent(etype, obj)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise errors.ServerError(f"WATCH {path}: stream broken: {e}") from e
