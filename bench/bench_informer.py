"""Informer benchmarks on a real API server: initial sync, memory per cached object, event latency.

Contenders, each in a fresh subprocess (so one's memory never counts for another):
  floor     paginated LIST (limit 500) + JSON decode, items kept in a list: the least any cache can cost
  ours      virtmigrate.informer.SharedInformer (raw JSON, managedFields stripped by the default
            transform), timed until its handler has received every initial add
  official  kubernetes.informer.SharedInformer (kubernetes 37.x), timed until its ADDED handler
            has seen every object
for 10,000 ConfigMaps carrying realistic data (labels, annotations, ~1 KiB of data, managedFields
from a server-side apply plus an update by a second manager), and for 10,000 custom objects
(ours vs the floor; the official informer is run to show it fails with TypeError).
Memory: objects retained after sync, by tracemalloc (a separate traced run), and the RSS delta
of the timed run. Then event latency (API write -> handler call) p50/p99 while 1,000 objects
change: ours vs a bare watch stream (the floor) vs the official informer.

Starts its own control plane in a temporary directory unless $KUBECONFIG is set.

    python bench/bench_informer.py [--objects 10000] [--repeats 5] [--changes 1000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.informer import FuncHandler, InformerConfig, SharedInformer
from virtmigrate.kube import CONFIGMAPS, KubeClient, Resource
from virtmigrate.kube.listwatch import KubeListerWatcher
from virtmigrate.kube.resources import NAMESPACES

CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
WIDGETS = Resource("bench.virtmigrate.io", "v1", "widgets", kind="Widget")
JSON = dict[str, Any]
APPLY = "application/apply-patch+yaml"


# --- fixtures on the server ---------------------------------------------------------------------

def realistic_configmap(i: int, ns: str) -> JSON:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{i:05d}", "namespace": ns,
            "labels": {"app.kubernetes.io/name": f"svc-{i % 50}", "app.kubernetes.io/part-of": "shop",
                       "tier": ("web", "api", "db")[i % 3], "team": f"team-{i % 7}"},
            "annotations": {"deploy.example.com/revision": str(i), "owner": f"team-{i % 7}@example.com"},
        },
        "data": {f"key-{k}": f"value-{i}-{k}-" + "x" * 180 for k in range(5)},
    }


def widget(i: int, ns: str) -> JSON:
    return {"apiVersion": "bench.virtmigrate.io/v1", "kind": "Widget",
            "metadata": {"name": f"w-{i:05d}", "namespace": ns, "labels": {"shard": str(i % 16)}},
            "spec": {"size": i, "color": ("red", "green", "blue")[i % 3], "tags": [f"t{i % 9}", "bench"],
                     "config": {f"k{k}": "v" * 100 for k in range(5)}}}


def apply(client: KubeClient, res: Resource, obj: JSON, manager: str) -> None:
    meta = obj["metadata"]
    client.request("PATCH", res.path(meta["namespace"], meta["name"]), body=json.dumps(obj).encode(),
                   content_type=APPLY, query={"fieldManager": manager, "force": True})


def ensure_namespace(client: KubeClient, ns: str) -> None:
    with contextlib.suppress(errors.AlreadyExists):
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def count(client: KubeClient, res: Resource, ns: str) -> int:
    return len(client.list_all(res, ns))


def populate(client: KubeClient, res: Resource, ns: str, n: int, make: Any) -> None:
    """Server-side apply each object, then a merge-patch update by a second manager (two
    managedFields entries, as objects touched by a deploy tool and a controller carry)."""
    if count(client, res, ns) >= n:
        return

    def one(i: int) -> None:
        obj = make(i, ns)
        apply(client, res, obj, "deploy-tool")
        client.request("PATCH", res.path(ns, obj["metadata"]["name"]),
                       body={"metadata": {"annotations": {"controller.example.com/seen": "true"}}},
                       content_type="application/merge-patch+json", query={"fieldManager": "some-controller"})

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    print(f"  created {n} {res.plural} in {ns} in {time.perf_counter() - t0:.1f}s", flush=True)


def ensure_widget_crd(client: KubeClient) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.bench.virtmigrate.io"},
           "spec": {"group": "bench.virtmigrate.io", "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget",
                              "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
    with contextlib.suppress(errors.AlreadyExists):
        client.create(CRDS, crd)
    for _ in range(100):
        conds = (client.get(CRDS, "widgets.bench.virtmigrate.io").get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            time.sleep(1)  # discovery catches up a moment after Established
            return
        time.sleep(0.1)
    raise RuntimeError("widget CRD not established")


# --- contenders (run in a child process) --------------------------------------------------------

def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sync_floor(client: KubeClient, res: Resource, ns: str, n: int) -> Any:
    items: list[JSON] = []
    cont = None
    while True:
        page = client.list(res, ns, limit=500, continue_=cont)
        items.extend(page["items"])
        cont = page["metadata"].get("continue")
        if not cont:
            break
    assert len(items) == n, len(items)
    return items


def sync_ours(client: KubeClient, res: Resource, ns: str, n: int) -> Any:
    inf = SharedInformer(KubeListerWatcher(client, res, namespace=ns),
                         InformerConfig(name="bench", registry=CollectorRegistry()))
    seen = [0]

    def on_add(obj: JSON, initial: bool) -> None:
        seen[0] += 1

    reg = inf.add_event_handler(FuncHandler(add=on_add))
    stop = threading.Event()
    inf.start(stop)
    while not reg.has_synced():
        time.sleep(0.001)
    assert seen[0] == n and len(inf.indexer.list()) == n, (seen[0], n)
    return inf, stop


def official_api(kubeconfig: str) -> Any:
    from kubernetes import client as kc
    from kubernetes import config as kcfg
    cfg = kc.Configuration()
    kcfg.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return kc.ApiClient(cfg)


def sync_official(kubeconfig: str, res: Resource, ns: str, n: int) -> Any:
    import functools

    from kubernetes import client as kc
    from kubernetes.informer import ADDED, ERROR
    from kubernetes.informer import SharedInformer as OfficialInformer
    api = official_api(kubeconfig)
    if res == CONFIGMAPS:
        list_func = kc.CoreV1Api(api).list_namespaced_config_map
    else:
        list_func = functools.partial(kc.CustomObjectsApi(api).list_namespaced_custom_object,
                                      res.group, res.version, plural=res.plural)
    inf = OfficialInformer(list_func, namespace=ns)
    done = threading.Event()
    seen = [0]
    failure: list[BaseException] = []

    def on_add(obj: Any) -> None:
        seen[0] += 1
        if seen[0] == n:
            done.set()

    def on_error(exc: Any) -> None:
        if isinstance(exc, BaseException):
            failure.append(exc)
            done.set()

    inf.add_event_handler(ADDED, on_add)
    inf.add_event_handler(ERROR, on_error)
    logging.getLogger("kubernetes.informer").setLevel(logging.CRITICAL)
    inf.start()
    done.wait(300)
    if failure:
        inf._stop_event.set()
        raise failure[0]
    assert seen[0] == n and len(inf.cache.list_keys()) == n
    return inf


def quiet_logs() -> None:
    """Keep the informer's debug logs off stdout, where the parent reads the result line."""
    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def emit(result: JSON) -> None:
    sys.stdout.write(f"\nRESULT {json.dumps(result)}\n")  # one write: no other thread's output can split it
    sys.stdout.flush()


def parse_result(stdout: str) -> JSON | None:
    for line in reversed(stdout.splitlines()):
        if "RESULT " in line:
            out: JSON = json.loads(line.split("RESULT ", 1)[1])
            return out
    return None


def child(args: argparse.Namespace) -> int:
    quiet_logs()
    res = CONFIGMAPS if args.kind == "configmaps" else WIDGETS
    client = KubeClient.from_kubeconfig(args.kubeconfig)
    client.request("GET", "/version")  # warm the connection pool: we time the sync, not the TLS handshake
    if args.contender == "official":
        import kubernetes.client  # noqa: F401 - import cost is not part of the sync
    gc.collect()
    if args.mem:
        tracemalloc.start()
    base_rss = rss_bytes()
    base_traced = tracemalloc.get_traced_memory()[0] if args.mem else 0
    t0 = time.perf_counter()
    try:
        if args.contender == "floor":
            kept = sync_floor(client, res, args.namespace, args.objects)
        elif args.contender == "ours":
            kept = sync_ours(client, res, args.namespace, args.objects)
        else:
            kept = sync_official(args.kubeconfig, res, args.namespace, args.objects)
    except Exception as e:
        emit({"error": f"{type(e).__name__}: {e}"})
        return 0
    dt = time.perf_counter() - t0
    gc.collect()
    out = {"seconds": dt, "rss_delta": rss_bytes() - base_rss}
    if args.mem:
        out["traced"] = tracemalloc.get_traced_memory()[0] - base_traced
    del kept
    emit(out)
    return 0


def run_child(contender: str, kind: str, ns: str, n: int, kubeconfig: str, mem: bool) -> JSON:
    argv = [sys.executable, __file__, "--child", contender, "--kind", kind, "--namespace", ns,
            "--objects", str(n), "--kubeconfig", kubeconfig] + (["--mem"] if mem else [])
    for _attempt in range(3):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        result = parse_result(p.stdout)
        if result is not None:
            return result  # (a daemon thread of the official informer may crash the child at exit: the figure stands)
        print(f"  {contender} child failed (exit {p.returncode}): {p.stderr[-500:]!r}; retrying", flush=True)
    raise RuntimeError(f"{contender} failed three times")


def measure(contender: str, kind: str, ns: str, n: int, kubeconfig: str, repeats: int) -> JSON:
    runs = [run_child(contender, kind, ns, n, kubeconfig, False) for _ in range(repeats)]
    if any("error" in r for r in runs):
        return {"error": next(r["error"] for r in runs if "error" in r)}
    mem = run_child(contender, kind, ns, n, kubeconfig, True)
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_per_obj": statistics.median(r["rss_delta"] for r in runs) / n,
            "traced_per_obj": mem["traced"] / n}


def report_sync(title: str, results: dict[str, JSON], n: int) -> None:
    print(f"\n{title}: initial sync of {n} objects (median wall time; memory retained per cached object)")
    floor, official = results["floor"], results.get("official", {})
    print(f"{'contender':10} {'seconds':>8} {'obj/s':>8} {'traced B/obj':>13} {'RSS B/obj':>10} "
          f"{'time/floor':>10} {'time/official':>13} {'mem/official':>12}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:10} FAILED: {r['error'][:150]}")
            continue
        vs_off_t = vs_off_m = "-"
        if "seconds" in official:
            vs_off_t = f"{r['seconds'] / official['seconds']:.2f}x"
            vs_off_m = f"{r['traced_per_obj'] / official['traced_per_obj']:.2f}x"
        print(f"{name:10} {r['seconds']:8.3f} {n / r['seconds']:8.0f} {r['traced_per_obj']:13.0f} "
              f"{r['rss_per_obj']:10.0f} {r['seconds'] / floor['seconds']:9.2f}x {vs_off_t:>13} {vs_off_m:>12}")


# --- event latency ------------------------------------------------------------------------------

def latency_run(kind: str, client: KubeClient, kubeconfig: str, ns: str, changes: int) -> list[float]:
    """Seconds from just before each update is sent to the handler (or stream) seeing it."""
    got: dict[str, float] = {}
    all_seen = threading.Event()
    lock = threading.Lock()

    def seen(obj: Any) -> None:
        stamp = obj["data"].get("stamp") if isinstance(obj, dict) else (obj.data or {}).get("stamp")
        if stamp and stamp not in got:
            with lock:
                got[stamp] = time.monotonic()  # CLOCK_MONOTONIC: comparable with the writer process
                if len(got) == changes:
                    all_seen.set()

    stop = threading.Event()
    cleanup: Any = None
    if kind == "ours":
        inf = SharedInformer(KubeListerWatcher(client, CONFIGMAPS, namespace=ns),
                             InformerConfig(name="latency", registry=CollectorRegistry()))
        reg = inf.add_event_handler(FuncHandler(update=lambda old, new: seen(new)))
        inf.start(stop)
        while not reg.has_synced():
            time.sleep(0.01)
        cleanup = stop.set
    elif kind == "floor":
        rv = client.list(CONFIGMAPS, ns, limit=1)["metadata"]["resourceVersion"]
        lw = KubeListerWatcher(client, CONFIGMAPS, namespace=ns)
        w = lw.watch(resource_version=rv, timeout_seconds=600)

        def pump() -> None:
            for ev in w:
                seen(ev.object)

        threading.Thread(target=pump, daemon=True).start()
        time.sleep(0.5)
        cleanup = w.stop
    else:
        from kubernetes import client as kc
        from kubernetes.informer import MODIFIED
        from kubernetes.informer import SharedInformer as OfficialInformer
        logging.getLogger("kubernetes.informer").setLevel(logging.CRITICAL)  # it logs tracebacks at shutdown
        oinf = OfficialInformer(kc.CoreV1Api(official_api(kubeconfig)).list_namespaced_config_map, namespace=ns)
        synced = threading.Event()
        oinf.add_event_handler(MODIFIED, seen)
        oinf.add_event_handler("ADDED", lambda o: synced.set())
        oinf.start()
        synced.wait(60)
        time.sleep(1.0)
        cleanup = oinf._stop_event.set

    # the writers run in another process, so they do not compete with the contender for the GIL
    p = subprocess.run([sys.executable, __file__, "--writer", kind, "--namespace", ns, "--kubeconfig", kubeconfig,
                        "--changes", str(changes)], capture_output=True, text=True, timeout=600)
    sent = parse_result(p.stdout)
    assert sent is not None, p.stderr[-2000:]
    all_seen.wait(120)
    cleanup()
    lat = sorted(got[s] - sent[s] for s in got if s in sent)
    if len(lat) < changes:
        print(f"  {kind}: only {len(lat)} of {changes} changes seen")
    return lat


def writer(args: argparse.Namespace) -> int:
    """Change `--changes` ConfigMaps from 4 threads; print `stamp -> monotonic time just before sending`."""
    client = KubeClient.from_kubeconfig(args.kubeconfig)
    sent: dict[str, float] = {}

    def write(i: int) -> None:
        stamp = f"{args.writer}-{i}-{time.time_ns()}"
        sent[stamp] = time.monotonic()
        client.request("PATCH", CONFIGMAPS.path(args.namespace, f"cm-{i:05d}"), body={"data": {"stamp": stamp}},
                       content_type="application/merge-patch+json")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(args.changes)))
    emit(sent)
    return 0


# --- main ---------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--changes", type=int, default=1_000)
    ap.add_argument("--child", choices=["floor", "ours", "official"])
    ap.add_argument("--kind", default="configmaps")
    ap.add_argument("--namespace", default="")
    ap.add_argument("--kubeconfig", default="")
    ap.add_argument("--mem", action="store_true")
    ap.add_argument("--writer", default="")
    args = ap.parse_args()
    if args.writer:
        return writer(args)
    if args.child:
        args.contender = args.child
        return child(args)

    plane = None
    tmp = None
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig:
        from virtmigrate.local.controlplane import ControlPlane
        tmp = Path(tempfile.mkdtemp(prefix="virtmigrate-bench-"))
        plane = ControlPlane(tmp)
        print(f"starting a control plane in {tmp} ({plane.up():.1f}s)")
        kubeconfig = str(plane.kubeconfig)
    try:
        client = KubeClient.from_kubeconfig(kubeconfig)
        n = args.objects
        ns_cm, ns_cr, ns_lat = f"bench-cm-{n}", f"bench-cr-{n}", "bench-latency"
        for ns in (ns_cm, ns_cr, ns_lat):
            ensure_namespace(client, ns)
        print("setting up objects")
        populate(client, CONFIGMAPS, ns_cm, n, realistic_configmap)
        ensure_widget_crd(client)
        populate(client, WIDGETS, ns_cr, n, widget)
        populate(client, CONFIGMAPS, ns_lat, args.changes, realistic_configmap)
        sample = client.get(CONFIGMAPS, "cm-00000", ns_cm)
        print(f"  a ConfigMap is {len(json.dumps(sample))} bytes of JSON, "
              f"{len(json.dumps(sample['metadata']['managedFields']))} of them managedFields "
              f"({len(sample['metadata']['managedFields'])} entries)")

        cm = {c: measure(c, "configmaps", ns_cm, n, kubeconfig, args.repeats) for c in ("floor", "ours", "official")}
        report_sync("ConfigMaps", cm, n)
        cr = {c: measure(c, "widgets", ns_cr, n, kubeconfig, args.repeats) for c in ("floor", "ours", "official")}
        report_sync("Custom objects (widgets.bench.virtmigrate.io)", cr, n)

        print(f"\nEvent latency, API write -> handler, while {args.changes} ConfigMaps change "
              "(4 writer threads in another process)")
        lats: dict[str, list[float]] = {"floor": [], "ours": [], "official": []}
        for _round in range(3):  # interleaved rounds, so drifting machine load hits every contender alike
            for kind in lats:
                lats[kind] += latency_run(kind, client, kubeconfig, ns_lat, args.changes)
        pct = {k: (statistics.median(v), sorted(v)[int(len(v) * 0.99)]) for k, v in lats.items()}
        print(f"{'contender':10} {'p50 ms':>8} {'p99 ms':>8} {'p50/floor':>10} {'p99/floor':>10}   (3 rounds pooled)")
        for kind, (p50, p99) in pct.items():
            print(f"{kind:10} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} {p50 / pct['floor'][0]:9.2f}x "
                  f"{p99 / pct['floor'][1]:9.2f}x")
    finally:
        if plane is not None:
            plane.down()
            shutil.rmtree(tmp, ignore_errors=True)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
