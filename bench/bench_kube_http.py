"""The kube client's transport: the hand-written kept-alive connection against urllib3, on the same requests.

Issue 11 §3: keep the hand-written HTTP/1.1 connection (`virtmigrate.kube.client._ConnectionPool`) only if
it measurably beats urllib3 (`urllib3.PoolManager`, what watches use) on the same requests. Both send the
same method, path, headers and body, over TLS with the same client certificate, to the same real
kube-apiserver, and both decode the JSON answer; rounds alternate so drift hits both alike.

Figures per workload: wall µs per request and client CPU µs per request (this process's CPU: the API
server runs in its own processes), one thread and 8 threads, and the ratio urllib3 / hand-written.

Watches: the same watch (of a namespace's 2 KiB ConfigMaps while a writer changes --watch-objects of them
one after another, so each event comes as a chunk of its own, as a controller's pod events do) read by
`KubeClient.open_watch` (the hand-written connection's chunked reader) and by urllib3's streamed response,
both through the same event decoder: CPU µs per event of the reading thread, and the ratio.

    python bench/bench_kube_http.py [--requests 2000] [--rounds 3] [--watch-objects 2000]
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

from virtmigrate.kube.client import MERGE_PATCH, KubeClient, _decode_stream
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


def urllib3_pool(client: KubeClient) -> urllib3.PoolManager:
    """A urllib3 pool with the client's TLS settings (what the client used for watches until it read them itself)."""
    cfg = client._cfg
    kwargs: dict[str, Any] = {"maxsize": 32, "block": False, "retries": False}
    if client.host.startswith("https"):
        kwargs["cert_reqs"] = "CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE"
        if cfg.ssl_ca_cert:
            kwargs["ca_certs"] = cfg.ssl_ca_cert
        if cfg.cert_file:
            kwargs["cert_file"] = cfg.cert_file
            kwargs["key_file"] = cfg.key_file
    return urllib3.PoolManager(**kwargs)


def with_urllib3(client: KubeClient) -> Send:
    timeout = urllib3.Timeout(connect=10, read=30)
    pool = urllib3_pool(client)

    def send(method: str, path: str, body: bytes | None, ctype: str | None) -> Any:
        resp = pool.request(method, client.host + path, body=body, headers=client._headers(ctype),
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


Reader = Callable[[int, str], float]


def watch_readers(client: KubeClient, ns: str) -> dict[str, Reader]:
    """Each reads `n` events of a watch of `ns`'s ConfigMaps from resourceVersion `rv`; returns the CPU of the
    reading thread, µs per event."""
    pool = urllib3_pool(client)

    def hand(n: int, rv: str) -> float:
        w = client.open_watch(CONFIGMAPS, ns, resource_version=rv, allow_bookmarks=False, timeout_seconds=120)
        c0 = time.thread_time()
        for got, _ in enumerate(w, 1):
            if got == n:
                break
        cpu = time.thread_time() - c0
        w.stop()
        return cpu / n * 1e6

    def u3(n: int, rv: str) -> float:
        c0 = time.thread_time()
        resp = pool.request("GET", client.host + CONFIGMAPS.path(ns) + f"?watch=true&resourceVersion={rv}"
                            "&timeoutSeconds=120", headers=client._headers(None), preload_content=False,
                            timeout=urllib3.Timeout(connect=10, read=150))
        assert resp.status == 200, resp.status
        for got, _ in enumerate(_decode_stream(resp.stream(64 * 1024, decode_content=True), "/bench"), 1):
            if got == n:
                break
        cpu = time.thread_time() - c0
        resp.close()
        return cpu / n * 1e6

    return {"hand-written": hand, "urllib3": u3}


def measure_watches(client: KubeClient, objects: int, rounds: int) -> None:
    """Events as a controller gets them: one at a time, each its own chunk (a writer thread changes the objects
    one after another while the reader watches); the reader's thread CPU only."""
    ns = f"bench-watch-{os.getpid()}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    quiet = client.without_answers()
    for i in range(objects):
        quiet.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"w-{i}",
                                  "labels": {"app": "bench", "i": str(i)}}, "data": {"payload": "x" * 2048}}, ns)
    readers = watch_readers(client, ns)

    def one(read: Reader, n: int) -> float:
        rv = client.list(CONFIGMAPS, ns, limit=1)["metadata"]["resourceVersion"]
        writer = threading.Thread(target=lambda: [quiet.patch(CONFIGMAPS, f"w-{i}", {"data": {"n": str(time.time())}},
                                                               ns) for i in range(n)])
        writer.start()
        cpu = read(n, rv)
        writer.join()
        return cpu

    best: dict[str, float] = {}
    for read in readers.values():
        one(read, min(objects, 100))  # warm
    for _ in range(rounds):
        for name, read in readers.items():
            cpu = one(read, objects)
            best[name] = min(cpu, best.get(name, cpu))
    hw, u3 = best["hand-written"], best["urllib3"]
    print(f"watch, {objects} MODIFIED events of 2 KiB ConfigMaps as they happen, best of {rounds} rounds; CPU µs per "
          f"event of the reading thread\n  hand-written {hw:5.1f}   urllib3 {u3:5.1f}   urllib3/hand-written "
          f"{u3 / hw:.2f}x")
    client.delete(NAMESPACES, ns)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--watch-objects", type=int, default=2000, help="0: no watch measurement")
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
        if args.watch_objects:
            measure_watches(client, args.watch_objects, args.rounds)
    finally:
        if cp is not None:
            cp.down()
            shutil.rmtree(str(state), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
