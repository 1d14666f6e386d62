"""The kube client's transport: the hand-written kept-alive connection against urllib3, on the same requests.

Issue 11 §3: keep the hand-written HTTP/1.1 connection (`virtmigrate.kube.client._ConnectionPool`) only if
it measurably beats urllib3 (`urllib3.PoolManager`, what watches use) on the same requests. Both send the
same method, path, headers and body, over TLS with the same client certificate, to the same real
kube-apiserver, and both decode the JSON answer; rounds alternate so drift hits both alike.

Figures per workload: wall µs per request and client CPU µs per request (this process's CPU: the API
server runs in its own processes), one thread and 8 threads, and the ratio urllib3 / hand-written.

    python bench/bench_kube_http.py [--requests 2000] [--rounds 3]
        (own control plane, or the one of $VIRTMIGRATE_BENCH_KUBECONFIG)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import urllib3

from virtmigrate.kube.client import MERGE_PATCH, KubeClient
from virtmigrate.kube.resources import CONFIGMAPS, NAMESPACES

Send = Callable[[str, str, bytes | None, str | None], Any]


def hand_written(client: KubeClient) -> Send:
    def send(method: str, path: str, body: bytes | None, ctype: str | None) -> Any:
        status, raw, _keep, _retry = client._conns.round_trip(
            method, client._conns.prefix + path, body, client._headers(ctype), time.monotonic() + 30.0,
            replay_safe=method != "POST")
        assert status < 300, (status, raw[:200])
        return json.loads(raw)
    return send


def with_urllib3(client: KubeClient) -> Send:
    timeout = urllib3.Timeout(connect=10, read=30)

    def send(method: str, path: str, body: bytes | None, ctype: str | None) -> Any:
        resp = client._pool.request(method, client.host + path, body=body, headers=client._headers(ctype),
                                    timeout=timeout, retries=False)
        assert resp.status < 300, (resp.status, resp.data[:200])
        return json.loads(resp.data)
    return send


def workloads(ns: str) -> dict[str, tuple[str, str, bytes | None, str | None]]:
    return {
        "GET one ConfigMap": ("GET", CONFIGMAPS.path(ns, "cm-0"), None, None),
        "LIST 100 ConfigMaps": ("GET", CONFIGMAPS.path(ns) + "?limit=500", None, None),
        "PATCH (merge)": ("PATCH", CONFIGMAPS.path(ns, "cm-1"), json.dumps({"data": {"k": "v"}}).encode(),
                          MERGE_PATCH),
    }


def measure(send: Send, req: tuple[str, str, bytes | None, str | None], n: int, threads: int) -> tuple[float, float]:
    """(wall µs, client CPU µs) per request for `n` requests spread over `threads` threads."""
    per = n // threads

    def run() -> None:
        for _ in range(per):
            send(*req)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall / (per * threads) * 1e6, cpu / (per * threads) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kc = os.environ.get("VIRTMIGRATE_BENCH_KUBECONFIG")
    cp = state = None
    if not kc:
        from virtmigrate.local.controlplane import ControlPlane

        state = Path(tempfile.mkdtemp(prefix="bench-kube-http-"))
        cp = ControlPlane(state)
        cp.up()
        kc = str(cp.kubeconfig)
    try:
        client = KubeClient.from_kubeconfig(kc)
        ns = f"bench-http-{os.getpid()}"
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for i in range(100):
            client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"},
                                       "data": {"payload": "x" * 200}}, ns)
        sends = {"hand-written": hand_written(client), "urllib3": with_urllib3(client)}
        walls: list[float] = []
        cpus: list[float] = []
        print(f"kube client transport, {args.requests} requests per measurement, best of {args.rounds} rounds; "
              "µs per request (wall / client CPU)")
        for wname, req in workloads(ns).items():
            for threads in (1, 8):
                best: dict[str, tuple[float, float]] = {}
                for send in sends.values():
                    measure(send, req, 200, threads)  # warm: connections open, code paths hot
                for _ in range(args.rounds):
                    for name, send in sends.items():
                        wall, cpu = measure(send, req, args.requests, threads)
                        old = best.get(name)
                        best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
                hw, u3 = best["hand-written"], best["urllib3"]
                walls.append(u3[0] / hw[0])
                cpus.append(u3[1] / hw[1])
                print(f"  {wname:<20} {threads} thread{'s' if threads > 1 else ' '}  "
                      f"hand-written {hw[0]:7.0f} / {hw[1]:5.0f}   urllib3 {u3[0]:7.0f} / {u3[1]:5.0f}   "
                      f"urllib3/hand-written: wall {u3[0] / hw[0]:.2f}x, CPU {u3[1] / hw[1]:.2f}x")
        print(f"  median urllib3/hand-written: wall {statistics.median(walls):.2f}x, "
              f"client CPU {statistics.median(cpus):.2f}x")
        client.delete(NAMESPACES, ns)
    finally:
        if cp is not None:
            cp.down()
            shutil.rmtree(str(state), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
