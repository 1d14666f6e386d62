"""The kube client's HTTP/1.1 connection reads every answer framing the API server uses: Content-Length,
chunked (with trailers), read-until-close, bodiless statuses, and says when a kept-alive peer has gone."""

from __future__ import annotations

import socket
import threading

import pytest

from virtmigrate.kube.client import _Connection, _Disconnected

HEAD = b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n"


def _answer(raw: bytes, *, close_after: bool = True) -> tuple[_Connection, threading.Thread, list[bytes]]:
    """A connection whose peer reads one request, records it, answers `raw` and (optionally) closes."""
    ours, theirs = socket.socketpair()
    got: list[bytes] = []

    def peer() -> None:
        got.append(theirs.recv(65536))
        theirs.sendall(raw)
        if close_after:
            theirs.close()

    t = threading.Thread(target=peer)
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
])
def test_round_trip_reads_each_framing(raw: bytes, status: int, body: bytes, keep: bool) -> None:
    conn, t, got = _answer(raw)
    assert conn.round_trip(HEAD, None, 5) == (status, body, keep)
    t.join(5)
    assert got == [HEAD]
    conn.close()


def test_large_chunked_answer_is_reassembled() -> None:
    payload = bytes(range(256)) * 12000  # ~3 MB in 64 KiB chunks
    chunks = b"".join(b"%x\r\n" % len(payload[i:i + 65536]) + payload[i:i + 65536] + b"\r\n"
                      for i in range(0, len(payload), 65536))
    conn, t, _ = _answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    status, body, _keep = conn.round_trip(HEAD, None, 5)
    t.join(5)
    assert (status, body) == (200, payload)
    conn.close()


def test_body_is_sent_with_the_head_and_a_peer_that_hung_up_is_reported() -> None:
    conn, t, got = _answer(b"", close_after=True)
    with pytest.raises(_Disconnected):
        conn.round_trip(b"PATCH /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n", b"{}", 5)
    t.join(5)
    assert got == [b"PATCH /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"]
    conn.close()


def test_truncated_body_is_an_error_not_a_short_answer() -> None:
    import http.client

    conn, t, _ = _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    with pytest.raises(http.client.IncompleteRead):
        conn.round_trip(HEAD, None, 5)
    t.join(5)
    conn.close()
