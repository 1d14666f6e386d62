"""The operations HTTP server: /metrics (Prometheus text), /healthz (alive), /readyz (ready to act).

Fed by: cmd/controller.py with the metrics registry and a readiness callback (caches synced and,
with leader election, this replica either leads or stands by healthily).
Consumed by: Prometheus and the kubelet's probes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class OpsServer:
    """Serves in a daemon thread from `start()` until `stop()`, on `address` (host:port) or, given `fd`, on
    that inherited listening socket (bound and listening already; the server owns it from then on)."""

    def __init__(self, address: str, registry: CollectorRegistry, *, ready: Callable[[], bool],
                 healthy: Callable[[], bool] = lambda: True, fd: int = 0) -> None:
        host, _, port = address.rpartition(":")
        registry_ = registry
        ready_, healthy_ = ready, healthy

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = healthy_()
                    self._send(200 if ok else 500, b"ok\n" if ok else b"unhealthy\n")
                elif path == "/readyz":
                    ok = ready_()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would flood the logs

        if fd:
            self._httpd = ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
            self._httpd.socket.close()
            self._httpd.socket = socket.socket(fileno=fd)
            self._httpd.server_address = self._httpd.socket.getsockname()
        else:
            self._httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ops-server", daemon=True)

    @property
    def address(self) -> str:
        return f"{self._httpd.server_address[0]!s}:{self._httpd.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
