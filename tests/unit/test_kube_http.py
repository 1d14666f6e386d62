"""The kube client's HTTP/1.1 transport against real sockets on loopback.

The connection reads every answer framing the API server uses (Content-Length, chunked with trailers,
read-until-close, bodiless statuses) and says when a kept-alive peer has gone. Through `KubeClient`, against
a small scripted server: interim 1xx answers are skipped, a request that cannot be replayed is never sent
twice after a broken connection (one that can is, once), a 429 waits for its Retry-After on the client's
clock (bounded, within the deadline), and one overall deadline bounds a server that trickles its answer.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from virtmigrate import errors
from virtmigrate.clock import FakeClock
from virtmigrate.kube.client import (
    MAX_RETRY_AFTER_S,
    KubeClient,
    _Connection,
    _decode_stream,
    _Disconnected,
    _head_end,
    _IncompleteRead,
    _loads_event,
    _without_managed_fields,
    replay_safe,
    retry_after_s,
)
from virtmigrate.kube.resources import CONFIGMAPS

HEAD = b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def _deadline() -> float:
    return time.monotonic() + 5


def _answer(raw: bytes, *, close_after: bool = True) -> tuple[_Connection, threading.Thread, list[bytes]]:
    """A connection whose peer reads one request, records it, answers `raw` and (optionally) closes."""
    ours, theirs = socket.socketpair()
    got: list[bytes] = []

    def peer() -> None:
        got.append(theirs.recv(65536))
        theirs.sendall(raw)
        if close_after:
            theirs.close()

    t = threading.Thread(target=peer, daemon=True)
    t.start()
    return _Connection(ours), t, got


@pytest.mark.parametrize("raw, status, body, keep", [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\n{\"a\"}",
                 200, b'{"a"}', True, id="content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;ext=1\r\n\":1}\r\n0\r\n"
                 b"X-Trailer: t\r\n\r\n", 200, b'{"a":1}', True, id="chunked-with-extension-and-trailer"),
    pytest.param(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                 404, b"{}", False, id="connection-close"),
    pytest.param(b"HTTP/1.0 200 OK\r\n\r\nuntil-close", 200, b"until-close", False, id="read-until-close"),
    pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True, id="no-content"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK,
                 200, b"{}", True, id="interim-answers-skipped"),
])
def test_round_trip_reads_each_framing(raw: bytes, status: int, body: bytes, keep: bool) -> None:
    conn, t, got = _answer(raw)
    answer = conn.round_trip(HEAD, None, _deadline())
    assert (answer.status, answer.body, answer.keep) == (status, body, keep)
    t.join(5)
    assert got == [HEAD]
    conn.close()


def test_large_chunked_answer_is_reassembled() -> None:
    payload = bytes(range(256)) * 12000  # ~3 MB in 64 KiB chunks
    chunks = b"".join(b"%x\r\n" % len(payload[i:i + 65536]) + payload[i:i + 65536] + b"\r\n"
                      for i in range(0, len(payload), 65536))
    conn, t, _ = _answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    answer = conn.round_trip(HEAD, None, _deadline())
    t.join(5)
    assert (answer.status, answer.body) == (200, payload)
    conn.close()


def test_body_is_sent_with_the_head_and_a_peer_that_hung_up_is_reported() -> None:
    conn, t, got = _answer(b"", close_after=True)
    with pytest.raises(_Disconnected):
        conn.round_trip(b"PATCH /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", _deadline())
    t.join(5)
    assert got == [b"PATCH /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"]
    conn.close()


def test_truncated_body_is_an_error_not_a_short_answer() -> None:
    conn, t, _ = _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    with pytest.raises(_IncompleteRead):
        conn.round_trip(HEAD, None, _deadline())
    t.join(5)
    conn.close()


# --- through KubeClient, against a scripted loopback server ---------------------------------------------

Script = Callable[[socket.socket, int, "Server"], None]


class Server:
    """A loopback HTTP server; each accepted connection runs `script(sock, connection_index, server)`.
    `requests` records every request line received, in order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        n = 0
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(sock)
            threading.Thread(target=self._run, args=(sock, n), daemon=True).start()
            n += 1

    def _run(self, sock: socket.socket, n: int) -> None:
        with contextlib.suppress(OSError):
            self.script(sock, n, self)

    def read_request(self, sock: socket.socket) -> bytes:
        """One whole request (head and Content-Length body), recorded; b"" when the client closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return b""
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += sock.recv(65536)
        with self.lock:
            self.requests.append(head.split(b"\r\n")[0].decode())
        return data

    def close(self) -> None:
        self.listener.close()
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[Server, KubeClient]]]:
    servers: list[Server] = []

    def start(script: Script, *, clock: Any = None, timeout: float = 5.0) -> tuple[Server, KubeClient]:
        srv = Server(script)
        servers.append(srv)
        cfg = k8s_client.Configuration()
        cfg.host = f"http://127.0.0.1:{srv.port}"
        return srv, KubeClient(cfg, request_timeout=timeout, clock=clock)

    yield start
    for s in servers:
        s.close()


def _keep_answering(sock: socket.socket, _n: int, srv: Server, raw: bytes = OK) -> None:
    while srv.read_request(sock):
        sock.sendall(raw)


def test_interim_answers_are_never_the_final_answer(serve: Any) -> None:
    def script(sock: socket.socket, _n: int, srv: Server) -> None:
        while srv.read_request(sock):
            sock.sendall(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"final\":1}")

    _, kube = serve(script)
    assert kube.get(CONFIGMAPS, "a", "ns") == {"final": 1}
    assert kube.get(CONFIGMAPS, "b", "ns") == {"final": 1}  # the connection stays in step


def _answer_first_then_break(sock: socket.socket, n: int, srv: Server) -> None:
    """Connection 0 answers its first request, then reads the second and breaks without answering;
    later connections answer everything."""
    if n > 0:
        _keep_answering(sock, n, srv)
        return
    srv.read_request(sock)
    sock.sendall(OK)
    srv.read_request(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    sock.close()


@pytest.mark.parametrize("call, method", [
    pytest.param(lambda k: k.create(CONFIGMAPS, {"metadata": {"name": "x"}}, "ns"), "POST", id="post"),
    pytest.param(lambda k: k.patch(CONFIGMAPS, "x", {"data": {"a": "b"}}, "ns"), "PATCH", id="unguarded-patch"),
    pytest.param(lambda k: k.delete(CONFIGMAPS, "x", "ns"), "DELETE", id="unconditional-delete"),
])
def test_a_request_that_cannot_be_replayed_is_never_sent_twice(serve: Any, call: Any, method: str) -> None:
    srv, kube = serve(_answer_first_then_break)
    kube.get(CONFIGMAPS, "warm", "ns")  # leaves a kept-alive connection in the pool
    with pytest.raises(errors.ServerError, match="may have been applied"):
        call(kube)
    assert [r.split()[0] for r in srv.requests] == ["GET", method]


@pytest.mark.parametrize("call, method", [
    pytest.param(lambda k: k.get(CONFIGMAPS, "x", "ns"), "GET", id="get"),
    pytest.param(lambda k: k.patch(CONFIGMAPS, "x", {"metadata": {"resourceVersion": "7"}, "data": {}}, "ns"),
                 "PATCH", id="patch-guarded-by-resource-version"),
    pytest.param(lambda k: k.delete(CONFIGMAPS, "x", "ns", uid="u1"), "DELETE", id="delete-with-uid-precondition"),
])
def test_a_replayable_request_is_resent_once_on_a_fresh_connection(serve: Any, call: Any, method: str) -> None:
    srv, kube = serve(_answer_first_then_break)
    kube.get(CONFIGMAPS, "warm", "ns")
    assert call(kube) == {}
    assert [r.split()[0] for r in srv.requests] == ["GET", method, method]


def test_a_post_avoids_a_kept_alive_connection_the_server_has_closed(serve: Any) -> None:
    closed = threading.Event()

    def script(sock: socket.socket, n: int, srv: Server) -> None:
        if n == 0:  # answers once, then closes while idle
            srv.read_request(sock)
            sock.sendall(OK)
            sock.close()
            closed.set()
            return
        _keep_answering(sock, n, srv)

    srv, kube = serve(script)
    kube.get(CONFIGMAPS, "warm", "ns")
    assert closed.wait(5)  # on loopback the close has reached our socket once close() returned
    assert kube.create(CONFIGMAPS, {"metadata": {"name": "x"}}, "ns") == {}
    assert [r.split()[0] for r in srv.requests] == ["GET", "POST"]


def test_a_client_without_answers_still_reads_and_still_raises(serve: Any) -> None:
    """Its writes return {} (nothing decoded); reads, and every error, are what the plain client gives."""
    obj = b'{"metadata":{"name":"x","resourceVersion":"9"}}'

    def script(sock: socket.socket, _n: int, srv: Server) -> None:
        while request := srv.read_request(sock):
            if b"/configmaps/gone" in request.split(b"\r\n", 1)[0]:
                body = b'{"kind":"Status","reason":"NotFound","code":404,"message":"configmaps \\"gone\\" not found"}'
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(obj), obj))

    _, kube = serve(script)
    quiet = kube.without_answers()
    assert kube.patch(CONFIGMAPS, "x", {"data": {}}, "ns")["metadata"]["resourceVersion"] == "9"
    assert quiet.patch(CONFIGMAPS, "x", {"data": {}}, "ns") == {}
    assert quiet.create(CONFIGMAPS, {"metadata": {"name": "x"}}, "ns") == {}
    assert quiet.delete(CONFIGMAPS, "x", "ns") == {}
    assert quiet.get(CONFIGMAPS, "x", "ns")["metadata"]["name"] == "x"
    with pytest.raises(errors.NotFound, match="not found"):
        quiet.patch(CONFIGMAPS, "gone", {"data": {}}, "ns")


def _throttle_once(retry_after: bytes) -> Script:
    def script(sock: socket.socket, _n: int, srv: Server) -> None:
        first = True
        while srv.read_request(sock):
            if first:
                first = False
                sock.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: " + retry_after +
                             b"\r\nContent-Length: 2\r\n\r\n{}")
            else:
                sock.sendall(OK)
    return script


def test_a_429_waits_for_its_retry_after_on_the_clients_clock(serve: Any) -> None:
    clock = FakeClock()
    srv, kube = serve(_throttle_once(b"2"), clock=clock)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(
        kube.create(CONFIGMAPS, {"metadata": {"name": "x"}}, "ns")), daemon=True)
    t.start()
    assert clock.wait_for_waiters(1)
    deadline = clock.next_deadline()
    assert deadline is not None and deadline - clock.now() == 2.0
    assert len(srv.requests) == 1  # nothing resent before the time is up
    clock.step(2.0)
    t.join(5)
    assert result == [{}] and [r.split()[0] for r in srv.requests] == ["POST", "POST"]


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(serve: Any) -> None:
    clock = FakeClock()
    srv, kube = serve(_throttle_once(b"3600"), clock=clock, timeout=5.0)
    with pytest.raises(errors.ServerError) as info:
        kube.get(CONFIGMAPS, "x", "ns")
    assert info.value.status == 429 and len(srv.requests) == 1 and not clock.has_waiters()


@pytest.mark.parametrize("value, seconds", [
    pytest.param(b"2", 2.0, id="seconds"), pytest.param(b"3600", MAX_RETRY_AFTER_S, id="bounded"),
    pytest.param(b"", 1.0, id="absent"), pytest.param(b"Wed, 21 Oct 2015 07:28:00 GMT", 1.0, id="http-date"),
    pytest.param(b"-5", 0.0, id="negative"),
])
def test_retry_after_values(value: bytes, seconds: float) -> None:
    assert retry_after_s(value) == seconds


class TickingClock(FakeClock):
    """Each reading of the time moves it on by `tick` seconds: a slow server without waiting for one."""

    def __init__(self, tick: float) -> None:
        super().__init__()
        self.tick = tick

    def now(self) -> float:
        self.step(self.tick)
        return super().now()


def test_one_deadline_bounds_a_server_that_trickles_its_answer(serve: Any) -> None:
    sent = [0]

    def script(sock: socket.socket, _n: int, srv: Server) -> None:
        srv.read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\n")
        for i in range(2000):  # a header line every 2 ms: each read gets something, the whole never ends
            sock.sendall(b"X-Slow: %d\r\n" % i)
            sent[0] += 1
            time.sleep(0.002)

    _, kube = serve(script, clock=TickingClock(0.25), timeout=5.0)
    with pytest.raises(errors.ServerError, match="in time"):
        kube.get(CONFIGMAPS, "x", "ns")
    assert sent[0] < 200  # given up long before the server would have stopped


@pytest.mark.parametrize("method, body, safe", [
    pytest.param("GET", None, True, id="get"),
    pytest.param("PUT", {"metadata": {"resourceVersion": "1"}}, True, id="put"),
    pytest.param("POST", {"metadata": {"name": "x"}}, False, id="post"),
    pytest.param("PATCH", {"status": {}}, False, id="merge-patch-unguarded"),
    pytest.param("PATCH", {"metadata": {"resourceVersion": "9"}}, True, id="merge-patch-guarded"),
    pytest.param("PATCH", [{"op": "test", "path": "/metadata/resourceVersion", "value": "9"},
                           {"op": "replace", "path": "/spec", "value": {}}], True, id="json-patch-guarded"),
    pytest.param("PATCH", [{"op": "replace", "path": "/spec", "value": {}}], False, id="json-patch-unguarded"),
    pytest.param("DELETE", {"kind": "DeleteOptions"}, False, id="delete-unconditional"),
    pytest.param("DELETE", {"preconditions": {"uid": "u"}}, True, id="delete-with-precondition"),
])
def test_replay_safe(method: str, body: Any, safe: bool) -> None:
    assert replay_safe(method, body) is safe


def test_watch_stream_events_cut_across_chunks_and_several_in_one() -> None:
    lines = b"".join(b'{"type":"%s","object":{"metadata":{"name":"p%d"}}}\n' % (t, i)
                     for i, t in enumerate([b"ADDED", b"MODIFIED", b"DELETED", b"BOOKMARK"]))
    first = lines.index(b"\n") + 1
    body = lines[:first] + b"\n" + lines[first:]  # a blank line between two events: skipped
    for cut in range(1, len(body), 7):
        chunks = [body[i:i + cut] for i in range(0, len(body), cut)]
        events = [(e.type, e.object["metadata"]["name"]) for e in _decode_stream(chunks, "/x")]
        assert events == [("ADDED", "p0"), ("MODIFIED", "p1"), ("DELETED", "p2"), ("BOOKMARK", "p3")], cut


def test_watch_stream_error_410_is_gone() -> None:
    body = b'{"type":"ADDED","object":{}}\n{"type":"ERROR","object":{"code":410,"message":"too old"}}\n'
    with pytest.raises(errors.Gone, match="too old"):
        list(_decode_stream([body], "/x"))


def _event(name: str, etype: str = "ADDED") -> bytes:
    return b'{"type":"%s","object":{"metadata":{"name":"%s"}}}\n' % (etype.encode(), name.encode())


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


WATCH_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("step", [1, 5, 64, 100000], ids=lambda n: f"bytes-{n}-at-a-time")
def test_a_watch_reads_its_chunked_stream_however_the_bytes_arrive(serve: Any, step: int) -> None:
    """Each event its own chunk (as the API server sends them), one event across two chunks, two in one;
    sent `step` bytes at a time; the stream ends with the last chunk and a trailer."""
    a, b, c, d = _event("a"), _event("b", "MODIFIED"), _event("c", "DELETED"), _event("d", "BOOKMARK")
    stream = WATCH_HEAD + _chunked(a, b[:9], b[9:], c + d) + b"0\r\nX-Trailer: t\r\n\r\n"

    def script(sock: socket.socket, _n: int, srv: Server) -> None:
        srv.read_request(sock)
        for i in range(0, len(stream), step):
            sock.sendall(stream[i:i + step])
            if step < 100:
                time.sleep(0.0005)

    srv, kube = serve(script)
    got = [(e.type, e.object["metadata"]["name"]) for e in kube.watch(CONFIGMAPS, "ns", resource_version="7")]
    assert got == [("ADDED", "a"), ("MODIFIED", "b"), ("DELETED", "c"), ("BOOKMARK", "d")]
    assert srv.requests[0].startswith("GET /api/v1/namespaces/ns/configmaps?watch=true&resourceVersion=7")


def test_a_watch_refused_with_410_is_gone_and_other_refusals_are_mapped(serve: Any) -> None:
    def script(sock: socket.socket, n: int, srv: Server) -> None:
        srv.read_request(sock)
        code, reason = (410, b"Expired") if n == 0 else (403, b"Forbidden")
        body = b'{"kind":"Status","code":%d,"reason":"%s","message":"no"}' % (code, reason)
        sock.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (code, len(body), body))

    _, kube = serve(script)
    with pytest.raises(errors.Gone):
        list(kube.watch(CONFIGMAPS, "ns"))
    with pytest.raises(errors.Forbidden):
        list(kube.watch(CONFIGMAPS, "ns"))


def test_a_watch_cut_mid_chunk_is_a_broken_stream_not_an_end(serve: Any) -> None:
    def script(sock: socket.socket, _n: int, srv: Server) -> None:
        srv.read_request(sock)
        sock.sendall(WATCH_HEAD + _chunked(_event("a")) + b"40\r\n{\"type\":")
        sock.close()

    _, kube = serve(script)
    got: list[str] = []
    with pytest.raises(errors.ServerError, match="stream broken"):
        for e in kube.watch(CONFIGMAPS, "ns"):
            got.append(e.object["metadata"]["name"])
    assert got == ["a"]


def _one_event_then_silence(sock: socket.socket, _n: int, srv: Server) -> None:
    srv.read_request(sock)
    sock.sendall(WATCH_HEAD + _chunked(_event("a")))
    time.sleep(30)


def test_a_silent_watch_ends_after_its_read_timeout(serve: Any) -> None:
    """A peer that stops sending (dead, or a network gone) is caught by the read timeout, per chunk."""
    _, kube = serve(_one_event_then_silence)
    w = kube.open_watch(CONFIGMAPS, "ns")
    w._read_timeout = 0.3
    t0 = time.monotonic()
    with pytest.raises(errors.ServerError, match="stream broken"):
        list(w)
    assert time.monotonic() - t0 < 10


def test_stop_from_another_thread_ends_a_blocked_watch_quietly(serve: Any) -> None:
    _, kube = serve(_one_event_then_silence)
    w = kube.open_watch(CONFIGMAPS, "ns")
    got: list[str] = []
    outcome: list[BaseException | None] = []

    def consume() -> None:
        try:
            for e in w:
                got.append(e.object["metadata"]["name"])
            outcome.append(None)
        except BaseException as e:  # the test reports whatever ended it
            outcome.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    t.join(5)
    assert not t.is_alive() and outcome == [None] and got == ["a"]


_TRICKY = ['plain', ']},"spec":{', '],"name":"x', '"managedFields":[', ']}', 'a\\"b]', '],"', ']},"s', '{"k":[1]}',
           'ünï', '"spec":', '<&>']


def _pod_like(rng: random.Random) -> dict[str, Any]:
    """An object with managedFields whose strings (manager names, label and annotation values, field keys
    and spec values) hold the byte patterns the cut looks for."""
    def pick() -> str:
        return rng.choice(_TRICKY) + rng.choice(_TRICKY)

    entries = [{"manager": pick(), "operation": rng.choice(["Update", "Apply"]), "apiVersion": "v1",
                "time": "2026-11-29T13:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {f"f:{pick()}": {}}},
                             "f:spec": {f"k:{{\"name\":\"{pick()}\"}}": {".": {}, "f:args": {}}}},
                **({"subresource": "status"} if rng.random() < 0.5 else {})}
               for _ in range(rng.randint(1, 4))]
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p-" + pick(), "namespace": "ns", "uid": "u1", "resourceVersion": "42",
                         "creationTimestamp": "2026-11-29T13:00:00Z", "labels": {"a": pick(), "spec": "x"}
                         if rng.random() < 0.2 else {"a": pick()},
                         "annotations": {"b": pick(), "c": pick()}, "finalizers": [pick()],
                         "managedFields": entries},
            "spec": {"containers": [{"name": pick(), "args": [pick(), pick()]}], "nodeName": pick()},
            "status": {"phase": "Running", "message": pick()}}


@pytest.mark.parametrize("seed", range(40))
def test_a_watch_event_without_managed_fields_is_the_object_minus_that_field_or_decoded_whole(seed: int) -> None:
    """In the built-in encoding (ObjectMeta's field order: managedFields last) and the custom objects' (sorted
    keys), with the cut's byte patterns planted in every string: the event decodes to exactly the object
    without metadata.managedFields, never to a different object."""
    rng = random.Random(seed)
    obj = _pod_like(rng)
    expected = json.loads(json.dumps(obj))
    del expected["metadata"]["managedFields"]
    typed = json.dumps({"type": "MODIFIED", "object": obj}, separators=(",", ":"), ensure_ascii=rng.random() < 0.5)
    unstructured = json.dumps({"type": "MODIFIED", "object": obj}, separators=(",", ":"), sort_keys=True)
    for line in (typed.encode(), unstructured.encode()):
        assert line.count(b'"managedFields"') == 1
        assert _loads_event(line, True)["object"] == expected
        assert _loads_event(line, False)["object"] == obj


def test_the_cut_is_taken_for_both_encodings_of_a_plain_object() -> None:
    """Not only correct but taken: for an ordinary object the bytes are cut, not decoded whole."""
    entry = {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-29T13:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}, "subresource": "status"}
    obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                                                           "resourceVersion": "7", "labels": {"a": "b"},
                                                           "managedFields": [entry, entry]},
           "spec": {"containers": [{"name": "c", "args": ["x"]}]}, "status": {"phase": "Running"}}
    for sort_keys in (False, True):
        line = json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":"), sort_keys=sort_keys).encode()
        cut = _without_managed_fields(line)
        assert cut is not None and b"managedFields" not in cut and b"kubelet" not in cut
        assert json.loads(cut)["object"]["spec"] == obj["spec"]


def test_the_end_of_an_answers_head_is_where_the_blank_line_regex_finds_it() -> None:
    """`_head_end` (two substring searches) against `\\r?\\n\\r?\\n` on every short mix of CR, LF and text."""
    blank_line = re.compile(rb"\r?\n\r?\n")
    rng = random.Random(7)
    for _ in range(20000):
        buf = bytearray(b"".join(rng.choice([b"a", b"\r", b"\n"]) for _ in range(rng.randint(0, 10))))
        pos = rng.randint(0, len(buf))
        m = blank_line.search(buf, pos)
        assert _head_end(buf, pos) == ((m.start(), m.end()) if m else None), (bytes(buf), pos)
