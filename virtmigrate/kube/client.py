"""A raw-JSON Kubernetes client over sockets of its own, configured by virtmigrate.kube.config (a static kubeconfig or
the pod's service account) or, for anything else, the official client's loaders.

Generated model classes cost more to build than the JSON they wrap (see bench/), and a
controller reads a few fields of each object, so objects stay `dict`s. Every non-2xx answer
and every transport failure is mapped here, once, to the tree in virtmigrate.errors; nothing
above this module sees a socket's exceptions.

Thread-safe: one client (one connection pool) is shared by all informers and workers.

Requests (everything but watches) go over a small pool of kept-alive HTTP/1.1 connections that
share one TLS context, each request one write and its answer read by `_Connection`: urllib3's
per-request URL parsing, pool-key normalisation and liveness poll, and http.client's header
parsing, cost more CPU than the request itself on a busy controller (bench/bench_kube_http.py measures
both on the same requests against a real kube-apiserver: urllib3 took a median 3.3x the client CPU per
request — 3.1-3.9x on small GETs and PATCHes, 1.2-1.3x on a 100-object LIST — and 1.2x the wall time).
Watches stream on a connection of their own, read by the same `_Connection` (see `Watch`). Nothing here
imports urllib3 or the official client (see virtmigrate.kube.config for the loaders that do).

Every request has one overall deadline (`request_timeout`, or the call's `timeout`): connecting, sending
and every read of the answer share it, so a server that trickles bytes cannot hold a worker longer.
Interim answers (1xx: 100 Continue, 102 Processing, 103 Early Hints) are skipped, never taken as final.
A 429 is retried after its Retry-After (at most MAX_RETRY_AFTER_S each, and only within the deadline):
the server did not act on the request. After a connection breaks before any answer, a request is resent
(once, fresh) only when a second delivery cannot do anything the first did not (`replay_safe`):
GET, HEAD, PUT (idempotent by HTTP; our PUTs carry a resourceVersion), DELETE with preconditions and
PATCH guarded by a resourceVersion (the second delivery then meets a Conflict or NotFound, never a
second effect). POST (creates, TokenRequests), an unguarded PATCH and an unconditional DELETE are never
resent: the caller gets a ServerError saying the request may have been applied, and re-reads before
acting again. Before one of those is sent on a kept-alive connection, the connection is checked for a
close by the server, the usual cause of such a break.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import os
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import orjson

from virtmigrate import errors
from virtmigrate.clock import Clock, RealClock
from virtmigrate.kube.config import ClientConfig, Configuration, in_cluster_config, load_kubeconfig
from virtmigrate.kube.resources import SERVICEACCOUNTS, Resource

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
MAX_RETRY_AFTER_S = 10.0   # the longest a 429's Retry-After is honoured for, per attempt
MAX_429_RETRIES = 5        # then the 429 is the caller's (ServerError), deadline or not


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


def replay_safe(method: str, body: Any) -> bool:
    """May this request be sent again after its connection broke before any answer? Only when a second
    delivery cannot add an effect to the first (see the module docstring)."""
    if method in ("GET", "HEAD", "OPTIONS", "PUT"):
        return True
    if method == "DELETE":
        return isinstance(body, Mapping) and bool(body.get("preconditions"))
    if method == "PATCH":
        if isinstance(body, Mapping):
            return bool((body.get("metadata") or {}).get("resourceVersion"))
        if isinstance(body, list):  # a JSON patch: guarded by a test of the resourceVersion
            return any(isinstance(op, Mapping) and op.get("op") == "test"
                       and op.get("path") == "/metadata/resourceVersion" for op in body)
    return False  # POST, and anything unguarded


def retry_after_s(value: bytes) -> float:
    """Seconds a 429's Retry-After asks for, bounded to [0, MAX_RETRY_AFTER_S]; 1 s when absent or an
    HTTP date (the API server sends whole seconds)."""
    try:
        return min(max(float(value.strip() or b"1"), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


class KubeClient:
    """JSON requests to one API server. Build with `from_kubeconfig`, `in_cluster` or `auto`."""

    def __init__(self, configuration: Configuration, *, maxsize: int = 32,
                 request_timeout: float = 30.0, clock: Clock | None = None) -> None:
        """`configuration`: virtmigrate.kube.config's, or the official client's. `request_timeout`: each
        request's overall deadline, seconds. `clock`: the deadlines' and the Retry-After waits' time (a fake
        one in tests)."""
        self.host = configuration.host.rstrip("/")
        self._cfg = configuration
        self._timeout = request_timeout
        self._clock = clock or RealClock()
        self._maxsize = maxsize
        self._conns = _ConnectionPool(self.host, configuration, maxsize=maxsize, clock=self._clock)
        self._static_headers: dict[str | None, dict[str, str]] = {}
        self._write_answers = True  # False in a `without_answers()` view

    def without_answers(self) -> KubeClient:
        """This client (the same connections) for callers that never read what a write returns: its
        `create`, `replace`, `patch` and `delete` return {} instead of the decoded object the server echoes —
        decoding it is most of a write's CPU after the round trip. Errors are decoded and raised as ever."""
        view = copy.copy(self)
        view._write_answers = False
        return view

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None) -> KubeClient:
        """A static kubeconfig is read by virtmigrate.kube.config; any other by the official loader."""
        light = load_kubeconfig(path, context=context)
        if light is not None:
            return cls(light)
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config

        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg)
        return cls(cfg)

    @classmethod
    def in_cluster(cls) -> KubeClient:
        return cls(in_cluster_config())

    @classmethod
    def from_token(cls, host: str, token: str, *, ca_file: str | None) -> KubeClient:
        """A client for a service-account identity (the node runner hands pods these)."""
        return cls(ClientConfig(host=host, token=token, ssl_ca_cert=ca_file))

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
                timeout: float | None = None, answer: bool = True) -> Any:
        """One request within `timeout` seconds in all (default `request_timeout`); returns the decoded
        JSON body (`answer=False`: {} for a success, without decoding it) or raises a mapped KubeError
        (ServerError when the deadline passes)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            content_type = content_type or "application/json"
        target = self._conns.prefix + path + self._url_query(query)
        deadline = self._clock.now() + (timeout or self._timeout)
        replay = replay_safe(method, body)
        for attempt in range(MAX_429_RETRIES + 1):
            status, raw, _keep, retry_after = self._conns.round_trip(
                method, target, data, self._headers(content_type), deadline, replay_safe=replay)
            if status != 429 or attempt == MAX_429_RETRIES:
                break
            wait = retry_after_s(retry_after)
            if self._clock.now() + wait >= deadline:
                break  # honouring it would pass the deadline: the 429 is the answer
            self._clock.sleep(wait)  # 429: the server did not act on it, so any request may go again
        if not answer and status < 300:
            return {}
        payload: Any = None
        if raw:
            try:
                payload = orjson.loads(raw)
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
        out: JSON = self.request("POST", res.path(ns), body=obj, answer=self._write_answers)
        return out

    def replace(self, res: Resource, obj: JSON, *, subresource: str | None = None) -> JSON:
        """PUT the whole object; fails with Conflict when its resourceVersion is stale."""
        meta = obj["metadata"]
        out: JSON = self.request("PUT", res.path(meta.get("namespace"), meta["name"], subresource),
                                 body=obj, answer=self._write_answers)
        return out

    def update_status(self, res: Resource, obj: JSON) -> JSON:
        return self.replace(res, obj, subresource="status")

    def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = MERGE_PATCH) -> JSON:
        out: JSON = self.request("PATCH", res.path(namespace, name, subresource), body=patch,
                                 content_type=patch_type, answer=self._write_answers)
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
        out: JSON = self.request("DELETE", res.path(namespace, name), body=body, answer=self._write_answers)
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
                   send_initial_events: bool | None = None, drop_managed_fields: bool = False) -> Watch:
        """A watch that is sent when iteration starts and that `stop()` ends from any thread.
        `drop_managed_fields`: its objects come without `metadata.managedFields` (cheaper to decode)."""
        query = {"watch": True, "resourceVersion": resource_version, "labelSelector": label_selector,
                 "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                 "allowWatchBookmarks": allow_bookmarks, "sendInitialEvents": send_initial_events}
        if send_initial_events:
            query["resourceVersionMatch"] = "NotOlderThan"
        return Watch(self, res.path(namespace), query, read_timeout=(timeout_seconds or 300) + 30,
                     drop_managed_fields=drop_managed_fields)

    def watch(self, res: Resource, namespace: str | None = None, **kw: Any) -> Iterator[WatchEvent]:
        """Stream events until the server ends the watch (see `Watch`); closing the generator
        closes the connection."""
        yield from self.open_watch(res, namespace, **kw)


class _Disconnected(Exception):
    """The server closed the connection before any byte of an answer (a kept-alive one gone idle)."""


class _Answer(NamedTuple):
    status: int
    body: bytes
    keep: bool                 # the connection may carry another request
    retry_after: bytes = b""   # the Retry-After header as sent ("" when absent)


LINE_MAX = 65536
_RECV, _RECV_MAX = 65536, 1 << 20  # bytes asked of one read on the socket: at least, at most
_FIELDS = re.compile(rb"\n[ \t]*(content-length|transfer-encoding|connection|retry-after)[ \t]*:([^\n]*)", re.I)


def _head_end(buf: bytearray, pos: int) -> tuple[int, int] | None:
    """(start, end) of the first blank line at or after `pos` (`\r?\n\r?\n`, as a regex would find it first):
    two substring searches, a tenth of that regex's cost (it has no literal prefix to skip ahead with)."""
    crlf = buf.find(b"\n\r\n", pos)
    lf = buf.find(b"\n\n", pos, crlf + 2 if crlf >= 0 else len(buf))
    if lf < 0 and crlf < 0:
        return None
    nl, after = (lf, lf + 2) if lf >= 0 and (crlf < 0 or lf < crlf) else (crlf, crlf + 3)
    return (nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl), after


class _BadAnswer(Exception):
    """The server's answer breaks HTTP/1.1 (our own, not http.client's HTTPException: importing http.client
    loads the email package, a third of what a pod's process imports before its first request)."""


class _IncompleteRead(_BadAnswer):
    """The answer ended before the length it announced."""


class _Connection:
    """One kept-alive HTTP/1.1 connection: a request is one `sendall`, the answer is read through our own
    buffer, which understands Content-Length, chunked and read-until-close bodies.
    (http.client parses every answer's headers with the email package: a fifth of a request's CPU.)

    Every read on the socket is armed with the time left before the request's deadline, so the deadline
    bounds the whole answer, not each read; what is already buffered (most of an answer arrives in one
    read) is parsed without touching the socket or its timeout."""

    def __init__(self, sock: socket.socket, clock: Clock | None = None) -> None:
        self.sock = sock
        self.clock = clock or RealClock()
        self._buf = bytearray()  # received, not yet consumed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def dropped(self) -> bool:
        """True when this idle connection is readable: the server closed it (or sent what nobody asked)."""
        if self._buf:
            return True  # bytes nobody asked for
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _arm(self, deadline: float) -> None:
        left = deadline - self.clock.now()
        if left <= 0:
            raise TimeoutError("the request's deadline passed before the whole answer arrived")
        self.sock.settimeout(left)

    def _fill(self, deadline: float, want: int = 0) -> bool:
        """One read on the socket into the buffer; False at the end of the stream."""
        self._arm(deadline)
        data = self.sock.recv(min(max(want, _RECV), _RECV_MAX))
        if not data:
            return False
        self._buf += data
        return True

    def _readline(self, deadline: float) -> bytes:
        buf = self._buf
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl >= 0:
                line = bytes(buf[:nl + 1])
                del buf[:nl + 1]
                return line
            if len(buf) > LINE_MAX:
                raise _BadAnswer("header or chunk-size line too long")
            start = len(buf)
            if not self._fill(deadline):
                line = bytes(buf)  # end of stream
                buf.clear()
                return line

    def _read(self, n: int, deadline: float) -> bytes:
        """`n` bytes, or fewer at the end of the stream; n < 0: until the end of the stream."""
        buf = self._buf
        if n < 0:
            while self._fill(deadline):
                pass
            n = len(buf)
        while len(buf) < n and self._fill(deadline, n - len(buf)):
            pass
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def _head(self, deadline: float) -> tuple[int, int, bool, bool, bytes]:
        """(status, content length or -1, chunked, keep-alive, Retry-After) of the next answer's head, parsed
        at once when its end is buffered (an answer's head comes in one read)."""
        buf = self._buf
        pos = 0
        while (end := _head_end(buf, pos)) is None:
            if len(buf) - (buf.rfind(b"\n") + 1) > LINE_MAX:
                raise _BadAnswer("header or chunk-size line too long")
            pos = max(len(buf) - 3, 0)
            if not self._fill(deadline):
                if not buf:
                    raise _Disconnected("server closed the connection")
                raise _IncompleteRead("the answer ended in its headers")
        head = bytes(buf[:end[0]])
        del buf[:end[1]]
        nl = head.find(b"\n")
        line = head if nl < 0 else head[:nl]
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise _BadAnswer(f"bad status line {line[:100]!r}")
        status = int(parts[1])
        length = -1
        chunked = False
        keep = parts[0] == b"HTTP/1.1"
        retry_after = b""
        for field in _FIELDS.finditer(head, max(nl, 0)):  # only the fields we act on, in order
            n, value = field.group(1).lower(), field.group(2)
            if n == b"content-length":
                length = int(value)
            elif n == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif n == b"connection":
                v = value.strip().lower()
                keep = v != b"close" and (keep or v == b"keep-alive")
            else:
                retry_after = value.strip()
        return status, length, chunked, keep, retry_after

    def send(self, head: bytes, body: bytes | None, deadline: float) -> tuple[int, int, bool, bool, bytes]:
        """Send one request whose request line and headers are `head`; (status, length, chunked, keep,
        Retry-After) of its final answer's head, read before `deadline`. Interim 1xx answers are skipped."""
        self._arm(deadline)
        self.sock.sendall(head + body if body else head)
        while True:
            status, length, chunked, keep, retry_after = self._head(deadline)
            if status == 101:
                raise _BadAnswer("101 Switching Protocols, which no request of ours asks for")
            if not 100 <= status < 200:
                return status, length, chunked, keep, retry_after
            # An interim answer (100 Continue, 102 Processing, 103 Early Hints): the final one follows.

    def round_trip(self, head: bytes, body: bytes | None, deadline: float) -> _Answer:
        """The final answer to one request, read whole before `deadline` (the clock's time) or TimeoutError."""
        status, length, chunked, keep, retry_after = self.send(head, body, deadline)
        data = self.body(status, length, chunked, deadline)
        return _Answer(status, data, keep and (chunked or length >= 0 or status in (204, 304)), retry_after)

    def body(self, status: int, length: int, chunked: bool, deadline: float) -> bytes:
        """The whole body of the answer whose head `send` returned, read before `deadline`."""
        if status in (204, 304):
            return b""
        if chunked:
            return b"".join(self.chunks(lambda: deadline))
        if length >= 0:
            data = self._read(length, deadline)
            if len(data) != length:
                raise _IncompleteRead(f"the body ended {length - len(data)} bytes short")
            return data
        return self._read(-1, deadline)  # delimited by the end of the stream: the connection is spent

    def pieces(self, length: int, deadline: Callable[[], float]) -> Iterator[bytes]:
        """A body that is not chunked, as it arrives: `length` bytes (-1: until the end of the stream); every
        read is armed with `deadline()`."""
        buf = self._buf
        left = length
        while left != 0:
            if not buf and not self._fill(deadline(), max(left, 0)):
                if left > 0:
                    raise _IncompleteRead(f"the body ended {left} bytes short")
                return
            n = len(buf) if left < 0 else min(left, len(buf))
            piece = bytes(buf[:n])
            del buf[:n]
            left = left - n if left > 0 else left
            yield piece

    def chunks(self, deadline: Callable[[], float]) -> Iterator[bytes]:
        """The chunks of a chunked body, each as it arrives, until the last (its trailers skipped); every read
        on the socket is armed with `deadline()`, asked before each chunk (a stream's idle bound is now + its
        read timeout; a whole answer's is one fixed time). One copy of each chunk's data, one cut of the buffer."""
        buf = self._buf
        got = 0
        while True:
            bound = deadline()
            start = 0
            while (nl := buf.find(b"\n", start)) < 0:
                if len(buf) > LINE_MAX:
                    raise _BadAnswer("chunk-size line too long")
                start = len(buf)
                if not self._fill(bound):
                    raise _IncompleteRead(f"the body ended in a chunk-size line after {got} bytes")
            try:
                size = int(bytes(buf[:nl]).split(b";", 1)[0], 16)
            except ValueError:
                raise _IncompleteRead(f"bad chunk size line after {got} bytes") from None
            if size == 0:
                del buf[:nl + 1]
                while self._readline(bound) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            end = nl + 1 + size
            while len(buf) < end + 2:  # the data and its CRLF
                if not self._fill(bound, end + 2 - len(buf)):
                    raise _IncompleteRead(f"a chunk ended {end - min(len(buf), end)} bytes short")
            piece = bytes(buf[nl + 1:end])
            del buf[:end + 2]
            got += size
            yield piece


class _ConnectionPool:
    """Idle kept-alive HTTP(S) connections to one server, taken and returned by request threads."""

    def __init__(self, host: str, cfg: Configuration, *, maxsize: int, clock: Clock | None = None) -> None:
        parts = urlsplit(host)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = f"Host: {parts.netloc}\r\n"
        self.prefix = parts.path.rstrip("/")
        self._maxsize = maxsize
        self._clock = clock or RealClock()
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

    def _new(self, deadline: float) -> _Connection:
        left = deadline - self._clock.now()
        if left <= 0:
            raise TimeoutError("the request's deadline passed before a connection was made")
        sock = socket.create_connection((self._host, self._port), timeout=left)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock, self._clock)

    def _take(self, *, check: bool) -> _Connection | None:
        """An idle connection, or None. `check`: skip (and close) those the server has closed."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or not check or not conn.dropped():
                return conn
            conn.close()

    def _head(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
        return f"{method} {target} HTTP/1.1\r\n{self._host_header}{fields}{length}\r\n".encode("latin-1")

    def round_trip(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
                   deadline: float, *, replay_safe: bool) -> _Answer:
        """Send one request and read its whole final answer before `deadline`. When a kept-alive
        connection breaks before any answer, a `replay_safe` request is sent once more on a fresh one;
        any other is not (it may have been applied), and is sent only on a connection checked first."""
        head = self._head(method, target, headers, body)
        conn = self._take(check=not replay_safe)
        for attempt in (0, 1):
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._new(deadline)
                answer = conn.round_trip(head, body, deadline)
            except (_Disconnected, BrokenPipeError, ConnectionResetError) as e:
                if conn is not None:
                    conn.close()
                conn = None
                if reused and attempt == 0 and replay_safe:
                    continue
                if not replay_safe:
                    raise errors.ServerError(
                        f"{method} {target}: the connection broke before an answer ({e}); not sent again, as it "
                        "may have been applied: read the object before acting again") from e
                raise errors.ServerError(f"{method} {target}: {e}") from e
            except TimeoutError as e:
                if conn is not None:
                    conn.close()
                raise errors.ServerError(f"{method} {target}: no complete answer in time: {e}") from e
            except (OSError, ValueError, _BadAnswer) as e:
                if conn is not None:
                    conn.close()
                raise errors.ServerError(f"{method} {target}: {e}") from e
            if answer.keep:
                with self._lock:
                    if len(self._idle) < self._maxsize:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()
            return answer
        raise AssertionError("unreachable")


WATCH_CONNECT_S = 10.0  # a watch's connection and TLS handshake, then its head: bounded apart from its stream


class Watch:
    """One watch request, on a connection of its own (never returned to the pool). Iterating sends it and
    yields events until the server ends the watch.

    Raises Gone on a 410 (in the status line or as an ERROR event), WatchError on any other ERROR
    event, ServerError on a broken stream — except when `stop()` broke it, which ends iteration quietly.
    The read timeout (the server's timeout plus a margin) bounds the wait for each chunk: it catches a dead
    peer. Chunks are read by `_Connection.chunks`, the reader every chunked answer goes through (as cheap
    per event as urllib3's streamed response: bench/bench_kube_http.py measures both on one watch).
    """

    def __init__(self, client: KubeClient, path: str, query: Mapping[str, Any], *, read_timeout: float,
                 drop_managed_fields: bool = False) -> None:
        self._client = client
        self._drop_managed_fields = drop_managed_fields
        self._path = path
        self._query = query
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._stopped = False

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            conn = self._conn
        if conn is not None:
            # shutdown() ends a read in progress in the iterating thread, which then closes the socket
            with contextlib.suppress(OSError, ValueError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._stopped:
            return
        c, path = self._client, self._path
        pool = c._conns
        clock = c._clock
        head = pool._head("GET", pool.prefix + path + c._url_query(self._query), c._headers(None), None)
        try:
            conn = pool._new(clock.now() + WATCH_CONNECT_S)
        except (OSError, ValueError) as e:  # TimeoutError and ssl.SSLError are OSErrors
            raise errors.ServerError(f"WATCH {path}: {e}") from e
        with self._lock:
            self._conn = conn
            stopped = self._stopped
        try:
            if stopped:
                return
            read_timeout = self._read_timeout
            try:
                status, length, chunked, _keep, _ = conn.send(head, None, clock.now() + WATCH_CONNECT_S + read_timeout)
                if status >= 300:
                    raw = conn.body(status, length, chunked, clock.now() + read_timeout)
                    try:
                        payload: Any = orjson.loads(raw)
                    except ValueError:
                        payload = raw.decode(errors="replace")
                    raise _error_for(status, payload, "WATCH", path)
                def idle_bound() -> float:
                    return clock.now() + read_timeout

                pieces: Iterable[bytes] = (conn.chunks(idle_bound) if chunked  # a proxy may send the stream unchunked
                                           else conn.pieces(length, idle_bound))
                yield from _decode_stream(pieces, path, drop_managed_fields=self._drop_managed_fields)
            except (OSError, ValueError, _BadAnswer) as e:
                if not self._stopped:
                    raise errors.ServerError(f"WATCH {path}: stream broken: {e}") from e
                # stop() broke the stream on purpose: end quietly
        finally:
            conn.close()  # a watch connection is never reused: closing also ends a half-read stream


_MANAGED = b',"managedFields":['
_NAME_NEXT = b',"name":"'  # after the array in a custom object (sorted keys: "name" follows "managedFields")
_META_ENDS = b'},"'  # after it in a built-in object (managedFields is ObjectMeta's last field), then a key


def _without_managed_fields(line: bytes) -> bytes | None:
    """`line` (one watch event as the API server encodes it) without its object's `metadata.managedFields`,
    cut out of the bytes; None when the cut cannot be proven right (then decode the whole line).

    Decoding managedFields (a small dict per field its managers own) is a third of the cost of decoding a
    launcher pod's event: 25.2 us whole, 16.3 us cut and decoded (6.5 KiB, 2.3 KiB of it managedFields;
    orjson, best of 5). The informers drop the field anyway.

    Why the cut is exact. In JSON a `"` inside a string is escaped, so `"managedFields":[` is a key whose value
    is an array, and `]` directly followed by `,"` and a letter, or by `,"name":"`, is an array's end outside
    any string (were the `]` in a string, the `"` that follows would close it, and a closing quote is never
    followed by a letter). The array holds ManagedFieldsEntry objects, whose values are strings and objects
    (fieldsV1) only: its first structural `]` is its end. That end is followed by `},"` and a key (a built-in
    object: ObjectMeta's last field) or `,"name":"` (a custom object: sorted keys); the first `]` after the key
    followed by either is therefore its end. The key must also come before `"spec":` and `"status":` (so it is
    the object's metadata's: both follow metadata in either encoding); what the cut leaves is still decoded and
    checked by the caller.
    """
    i = line.find(_MANAGED)
    if i < 0 or line.find(b'"spec":', 0, i) >= 0 or line.find(b'"status":', 0, i) >= 0:
        return None  # none, or a key of that name before the metadata's managedFields: do not guess
    end = line.find(b"]", i + len(_MANAGED))
    while end >= 0:  # a `]` inside a string (a manager's name) is rare: the first is nearly always the end
        after = line[end + 1:end + 10]
        if after == _NAME_NEXT or (after[:3] == _META_ENDS and after[3:4].isalpha()):
            return line[:i] + line[end + 1:]
        end = line.find(b"]", end + 1)
    return None


def _event_metadata(ev: Any) -> JSON | None:
    """The metadata of a decoded watch event's object, if it has one."""
    meta = ((ev.get("object") if isinstance(ev, dict) else None) or {}).get("metadata")
    return meta if isinstance(meta, dict) else None


def _loads_event(line: bytes, drop_managed_fields: bool) -> Any:
    if not drop_managed_fields:
        return orjson.loads(line)
    cut = _without_managed_fields(line)
    if cut is not None:
        try:
            ev = orjson.loads(cut)
        except ValueError:
            ev = None
        meta = _event_metadata(ev)
        if meta is not None and "resourceVersion" in meta and "name" in meta:
            return ev
    ev = orjson.loads(line)  # not cut: decoded whole, the field then dropped
    meta = _event_metadata(ev)
    if meta is not None:
        meta.pop("managedFields", None)
    return ev


def _decode_stream(pieces: Iterable[bytes], path: str, *, drop_managed_fields: bool = False) -> Iterator[WatchEvent]:
    """The events of a watch's body, one JSON document per line, cut anywhere into `pieces`.
    `drop_managed_fields`: objects come without `metadata.managedFields` (`_without_managed_fields`)."""
    buf = b""
    for chunk in pieces:
        buf = buf + chunk if buf else chunk
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            line, start = buf[start:nl], nl + 1  # one copy per event, not of the rest of the chunk
            if not line.strip():
                continue
            ev = _loads_event(line, drop_managed_fields)
            etype, obj = ev.get("type", ""), ev.get("object") or {}
            if etype == "ERROR":
                code = obj.get("code", 0)
                cls = errors.Gone if code == 410 else errors.WatchError
                raise cls(f"WATCH {path}: {obj.get('message', obj)}", status=code,
                          reason=obj.get("reason", ""), body=obj)
            yield WatchEvent(etype, obj)
        buf = buf[start:] if start < len(buf) else b""
