"""What is true now, read at the source: each node's libvirtd, the guests' serial files, the API.

Consumed by campaign.py, which turns a `Snapshot` into violations with invariants.py. A node whose libvirtd
does not answer is `None` in `Snapshot.domains` (unknown, not empty). `PodWatch` watches the pool's pods
for the whole campaign, so a Migration that ever had two agent pods is seen even when the first was gone
before anybody looked, and a fault finds the pod it is aimed at the moment it appears.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtmigrate import errors
from virtmigrate.api.constants import LABEL_MIGRATION, LABEL_ROLE, ROLE_AGENT
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import EVENTS, MIGRATIONS, NODES, PODS, VMS

JSON = dict[str, Any]
_HEARTBEAT = re.compile(r"^heartbeat (\d+)")
VIRSH_TIMEOUT_S = 10.0


def node_domains(lc: Any) -> dict[str, dict[str, str] | None]:
    """node -> {domain name: state} from `virsh list --all` against each node's libvirtd (None: no answer)."""
    out: dict[str, dict[str, str] | None] = {}
    for h in lc.hosts.hosts:
        node = f"node{h.index}"
        try:
            r = subprocess.run(["virsh", "-c", h.uri, "list", "--all"], capture_output=True, text=True,
                               timeout=VIRSH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out[node] = None
            continue
        if r.returncode != 0:
            out[node] = None
            continue
        doms: dict[str, str] = {}
        for line in r.stdout.splitlines()[2:]:
            parts = line.split(None, 2)
            if len(parts) == 3:
                doms[parts[1]] = parts[2].strip()
        out[node] = doms
    return out


def heartbeat(lc: Any, node: str, domain: str) -> int | None:
    """The guest's last heartbeat counter in its serial file on `node` (None: no complete heartbeat line).
    The counter lives in guest RAM: it carries on across a migration and starts again at 1 after a reboot."""
    f = lc.hosts.host(int(node.removeprefix("node"))).qemu_log_dir / f"{domain}-serial.log"
    try:
        with open(f, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode(errors="replace").split("\n")[:-1]  # the last piece may be half a line
    except OSError:
        return None
    for line in reversed(lines):
        m = _HEARTBEAT.match(line.strip())
        if m:
            return int(m.group(1))
    return None


@dataclass
class Snapshot:
    """Everything the invariants look at, read within a fraction of a second."""

    taken: float                                   # time.monotonic() when it was read
    domains: dict[str, dict[str, str] | None]      # node -> domain -> state (None: libvirtd unreachable)
    vms: dict[str, JSON]                           # name -> VM object
    migrations: dict[str, JSON]                    # name -> Migration object
    pods: list[JSON]                               # every pod of the namespace
    nodes_ready: dict[str, bool]
    api_error: str = ""                            # the API did not answer: everything above is partial
    # (node, domain) whose libvirt record is of a copy whose QEMU never ran (status pid 0), and the VMs
    # that got a LeftoverRefused Warning (the product saying libvirt refuses to remove such a record)
    never_started: frozenset[tuple[str, str]] = frozenset()
    refused_warned: frozenset[str] = frozenset()


def snapshot(lc: Any, client: KubeClient, namespace: str) -> Snapshot:
    doms = node_domains(lc)
    try:
        vms = {o["metadata"]["name"]: o for o in client.list_all(VMS, namespace)}
        migs = {o["metadata"]["name"]: o for o in client.list_all(MIGRATIONS, namespace)}
        pods = client.list_all(PODS, namespace)
        ready = {}
        for n in client.list_all(NODES):
            conds = {c["type"]: c["status"] for c in (n.get("status") or {}).get("conditions") or []}
            ready[n["metadata"]["name"]] = conds.get("Ready") == "True"
    except errors.KubeError as e:
        return Snapshot(time.monotonic(), doms, {}, {}, [], {}, api_error=str(e))
    stuck = never_started_records(lc, doms)
    warned: frozenset[str] = frozenset()
    if stuck:
        with contextlib.suppress(errors.KubeError):
            warned = frozenset(str((e.get("involvedObject") or {}).get("name", ""))
                               for e in client.list_all(EVENTS, namespace) if e.get("reason") == "LeftoverRefused")
    return Snapshot(time.monotonic(), doms, vms, migs, pods, ready, never_started=stuck, refused_warned=warned)


def never_started_records(lc: Any, doms: dict[str, dict[str, str] | None]) -> frozenset[tuple[str, str]]:
    """(node, domain) of every paused domain in `doms` (node_domains) whose libvirt record never_started."""
    return frozenset((node, dom) for node, d in doms.items() if d for dom, st in d.items()
                     if st == "paused" and never_started(lc, node, dom))


def status_file(lc: Any, node: str, domain: str) -> Path:
    """The node's libvirt status record of a running domain (its /run/libvirt/qemu/<domain>.xml)."""
    return Path(lc.hosts.host(int(node.removeprefix("node"))).root, "run", "qemu", f"{domain}.xml")


def never_started(lc: Any, node: str, domain: str) -> bool:
    """libvirt's record of `domain` on `node` has no QEMU process (pid 0): a daemon killed while it started
    an incoming copy keeps such a record, paused `starting up`, and refuses to destroy it (libvirt 9.0)."""
    try:
        head = status_file(lc, node, domain).read_text(errors="replace")[:2000]
    except OSError:
        return False
    return re.search(r"<domstatus [^>]*pid='0'", head) is not None


@dataclass
class PodRecord:
    uid: str
    name: str
    role: str            # "launcher" or "agent"
    migration: str       # the Migration label ("" on a VM's own launcher)
    migration_uid: str   # from the pod's controller ownerReference ("" when a VM owns it)
    node: str            # spec.nodeName as last seen ("" until bound)
    container: str       # the first container's name (the one that matters for both roles)


@dataclass
class PodWatch:
    """Every pod that ever existed in `namespace` while the watch ran (LIST, then WATCH; relists after any
    break, e.g. an API server restart). Read it from any thread."""

    client: KubeClient
    namespace: str
    seen: dict[str, PodRecord] = field(default_factory=dict)  # pod uid -> record
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _watch: Any = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            with contextlib.suppress(Exception):
                w.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _record(self, pod: JSON) -> None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        owner: dict[str, Any] = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), {})
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        rec = PodRecord(meta["uid"], meta["name"], labels.get(LABEL_ROLE, ""), labels.get(LABEL_MIGRATION, ""),
                        str(owner.get("uid", "")) if owner.get("kind") == "Migration" else "",
                        str((pod.get("spec") or {}).get("nodeName") or ""), str(containers[0].get("name", "")))
        with self._lock:
            old = self.seen.get(rec.uid)
            if old is None or (rec.node and not old.node):
                self.seen[rec.uid] = rec

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                page = self.client.list(PODS, self.namespace)
                for pod in page.get("items") or []:
                    self._record(pod)
                self._watch = self.client.open_watch(PODS, self.namespace,
                                                     resource_version=page["metadata"]["resourceVersion"],
                                                     timeout_seconds=60)
                for ev in self._watch:
                    if self._stop.is_set():
                        return
                    if ev.type in ("ADDED", "MODIFIED", "DELETED"):
                        self._record(ev.object)
            except Exception:
                self._stop.wait(0.3)

    def find(self, *, role: str, migration: str) -> list[PodRecord]:
        with self._lock:
            return [r for r in self.seen.values() if r.role == role and r.migration == migration]

    def by_name(self, name: str) -> list[PodRecord]:
        with self._lock:
            return [r for r in self.seen.values() if r.name == name]

    def agents_per_migration(self) -> dict[str, list[PodRecord]]:
        """Migration UID -> the agent pods it ever had."""
        out: dict[str, list[PodRecord]] = {}
        with self._lock:
            for r in self.seen.values():
                if r.role == ROLE_AGENT:
                    out.setdefault(r.migration_uid, []).append(r)
        return out
