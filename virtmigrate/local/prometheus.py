"""A real Prometheus for the local cluster, wired as the Prometheus Operator would wire it from
manifests/monitoring/.

The binary is upstream Prometheus 3 built from the Go module proxy with Kubernetes service discovery
(hack/build-prometheus.sh, cached like the control plane's binaries): Debian's package, which provides
promtool, is built without Kubernetes service discovery.

Started by LocalCluster.up after the controller, stopped first by LocalCluster.down. Its state:

    <state>/prometheus/   prometheus.yml, rules.yml, token (its ServiceAccount's), data/ (the TSDB),
                          prometheus.json (its port, chosen once), pids/, logs/

- Scrape configuration: *derived from* the ServiceMonitor (`scrape_configs`), the relabelling the operator
  generates for it — Kubernetes service discovery (role `endpointslice`) against the local API server,
  keep the Services the ServiceMonitor selects and their port of that name, label the targets namespace,
  service, pod, container, job, endpoint. Only the interval is the local cluster's own (INTERVAL).
- Rules: the PrometheusRule's `spec.groups` as a rule file (`rule_file`), with the local `for:` overrides
  of FOR_OVERRIDES written into the file's header.
- Credentials: a ServiceAccount `prometheus` in namespace `monitoring` that may get/list/watch Services,
  EndpointSlices and Pods in the namespaces the ServiceMonitor watches (`access_objects`), and the
  token of its service-account-token Secret, which the kube-controller-manager fills.
- Where the controller is found: with the node runner the controller is a process on this machine, so
  the cluster gives the Service of manifests/service.yaml no selector and registers the controller's
  metrics address as the Service's EndpointSlice (`external_backend`): Kubernetes' pattern for a backend
  outside the cluster. The API server refuses loopback endpoint addresses (127.0.0.0/8), and nothing
  may reach an address of this machine's but those: the controller's metrics listen inside a network
  namespace the cluster made (virtmigrate.local.metricsnet), whose address the slice names. On kubelet
  nodes the pods' addresses are their nodes' loopback addresses, which the endpointslice controller
  cannot publish for the same reason: Prometheus then finds the Service's pods itself (role `pod`, the
  Service's own selector and target port), which is what the EndpointSlices would have listed.

The decisions (`scrape_configs`, `rule_file`, `access_objects`, `external_backend`, `prometheus_config`)
are pure and unit-tested; `LocalPrometheus` only writes files and runs the process.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from virtmigrate import errors
from virtmigrate.local import procs
from virtmigrate.local.controlplane import cache_dir

JSON = dict[str, Any]

PROMETHEUS = "prometheus"
NAMESPACE = "monitoring"             # where Prometheus's own identity lives
SERVICE_ACCOUNT = "prometheus"
TOKEN_SECRET = "prometheus-token"    # its service-account-token Secret (the token controller fills it)
MANAGED_BY = "virtmigrate-local-cluster"  # endpointslice.kubernetes.io/managed-by of the slice we write
# Scrape and rule evaluation interval: 2 s instead of the ServiceMonitor's 30 s, so a test waits seconds.
INTERVAL = "2s"
# Local overrides of alerts' `for:`. VirtMigrateMigrationsFailing waits 5 minutes on a real cluster (a
# burst of failures that stops at once is not worth a page); the e2e tier waits for it to fire, so here it
# only has to hold for two evaluations. Everything else in the rules is the PrometheusRule's own.
FOR_OVERRIDES = {"VirtMigrateMigrationsFailing": "4s"}


def label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus's service discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _match_labels(selector: JSON, what: str) -> dict[str, str]:
    """`selector`'s matchLabels; anything else in it (matchExpressions) is refused, not ignored."""
    extra = set(selector) - {"matchLabels"}
    if extra:
        raise errors.ConfigError(f"{what}: only matchLabels is supported here, not {sorted(extra)}")
    return {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}


def _keep_labels(prefix: str, labels: Mapping[str, str]) -> list[JSON]:
    """Keep only targets whose object carries every label of `labels` (the operator's relabelling)."""
    return [{"action": "keep", "source_labels": [f"{prefix}_label_{label_name(k)}",
                                                  f"{prefix}_labelpresent_{label_name(k)}"],
             "regex": f"({re.escape(v)});true"} for k, v in sorted(labels.items())]


def _watched_namespaces(sm: JSON) -> list[str]:
    sel = (sm.get("spec") or {}).get("namespaceSelector") or {}
    if sel.get("any"):
        raise errors.ConfigError("ServiceMonitor namespaceSelector.any is not supported by the local Prometheus")
    return list(sel.get("matchNames") or [sm["metadata"]["namespace"]])


def scrape_configs(sm: JSON, *, api_server: str, ca_file: str, token_file: str, interval: str,
                   pods_of: JSON | None = None) -> list[JSON]:
    """The scrape configurations the Prometheus Operator generates for ServiceMonitor `sm`, one per
    endpoint, with `interval` for the scrape interval (and the timeout at most that).

    Without `pods_of`: role `endpointslice`, the Services `sm` selects, their port named like the
    endpoint's `port`. With `pods_of` (a Service `sm` selects): role `pod`, the pods of that Service's
    selector, their container port named like the Service port's targetPort — the targets the Service's
    EndpointSlices would hold, for a cluster whose pod addresses they cannot hold (the module docstring)."""
    spec = sm.get("spec") or {}
    ns, name = sm["metadata"]["namespace"], sm["metadata"]["name"]
    selector = _match_labels(spec.get("selector") or {}, f"ServiceMonitor {ns}/{name} spec.selector")
    role = "endpointslice" if pods_of is None else "pod"
    sd: JSON = {"role": role, "api_server": api_server, "tls_config": {"ca_file": ca_file},
                "authorization": {"credentials_file": token_file},
                "namespaces": {"names": _watched_namespaces(sm)}}
    if pods_of is not None:
        svc_labels = (pods_of.get("metadata") or {}).get("labels") or {}
        if any(svc_labels.get(k) != v for k, v in selector.items()):
            raise errors.ConfigError(f"Service {pods_of['metadata']['name']} is not one ServiceMonitor "
                                     f"{ns}/{name} selects ({selector})")
    out = []
    for i, ep in enumerate(spec.get("endpoints") or []):
        unsupported = set(ep) - {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
        if unsupported or "port" not in ep:
            raise errors.ConfigError(f"ServiceMonitor {ns}/{name} endpoints[{i}]: a named `port` is needed and "
                                     f"{sorted(unsupported)} is not supported by the local Prometheus")
        if pods_of is None:
            relabel = [*_keep_labels("__meta_kubernetes_service", selector),
                       {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                        "regex": re.escape(ep["port"])}]
            relabel += [{"source_labels": ["__meta_kubernetes_endpointslice_address_target_kind",
                                           "__meta_kubernetes_endpointslice_address_target_name"],
                         "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}",
                         "target_label": kind.lower()} for kind in ("Node", "Pod")]
            service = {"source_labels": ["__meta_kubernetes_service_name"]}
        else:
            relabel = [*_keep_labels("__meta_kubernetes_pod", _match_labels(
                {"matchLabels": (pods_of.get("spec") or {}).get("selector") or {}}, "Service selector")),
                       _keep_port(pods_of, ep["port"])]
            service = {"replacement": pods_of["metadata"]["name"]}
        relabel += [
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {**service, "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {**service, "target_label": "job"},
            {"replacement": ep["port"], "target_label": "endpoint"},
        ]
        out.append({"job_name": f"serviceMonitor/{ns}/{name}/{i}", "honor_labels": bool(ep.get("honorLabels")),
                    "scrape_interval": interval,
                    "scrape_timeout": _shorter(ep.get("scrapeTimeout") or interval, interval),
                    "metrics_path": ep.get("path") or "/metrics", "scheme": ep.get("scheme") or "http",
                    "kubernetes_sd_configs": [sd], "relabel_configs": relabel})
    return out


def _keep_port(service: JSON, port_name: str) -> JSON:
    """Keep a pod's container port that Service port `port_name` targets (by name or by number)."""
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if p.get("name") == port_name]
    if not ports:
        raise errors.ConfigError(f"Service {service['metadata']['name']} has no port named {port_name!r}")
    target = ports[0].get("targetPort", ports[0].get("port"))
    if isinstance(target, int):
        return {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                "regex": str(target)}
    return {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": re.escape(str(target))}


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    if m is None:
        raise errors.ConfigError(f"duration {duration!r}: expected a number and one of ms, s, m, h")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _shorter(a: str, b: str) -> str:
    return a if _seconds(a) <= _seconds(b) else b


def rule_file(rule: JSON, *, for_overrides: Mapping[str, str]) -> JSON:
    """The rule file of PrometheusRule `rule`: its `spec.groups`, with `for:` of the alerts named in
    `for_overrides` replaced. An override naming no alert of the rule is an error, so none goes stale."""
    groups = copy.deepcopy((rule.get("spec") or {}).get("groups") or [])
    alerts = {r.get("alert") for g in groups for r in g.get("rules") or []}
    stale = sorted(set(for_overrides) - alerts)
    if stale:
        raise errors.ConfigError(f"`for:` overrides name no alert of PrometheusRule "
                                 f"{rule['metadata']['name']}: {stale}")
    for g in groups:
        for r in g.get("rules") or []:
            if r.get("alert") in for_overrides:
                r["for"] = for_overrides[r["alert"]]
    return {"groups": groups}


def overrides_header(rule: JSON, for_overrides: Mapping[str, str]) -> str:
    """The rule file's comment header: where it comes from and what the local cluster changed."""
    original = {r.get("alert"): r.get("for", "0s") for g in (rule.get("spec") or {}).get("groups") or []
                for r in g.get("rules") or []}
    lines = [f"# spec.groups of PrometheusRule {rule['metadata']['namespace']}/{rule['metadata']['name']} "
             "(manifests/monitoring/prometheusrule.yaml), written by virtmigrate.local.prometheus.",
             "# Local overrides (FOR_OVERRIDES: the e2e tier waits for these alerts):"]
    lines += [f"#   {a}: for {original.get(a)} -> {d}" for a, d in sorted(for_overrides.items())]
    return "\n".join(lines) + "\n"


def prometheus_config(scrapes: list[JSON], *, rule_files: list[str], interval: str) -> JSON:
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": rule_files, "scrape_configs": scrapes}


def access_objects(namespaces: list[str]) -> list[JSON]:
    """Prometheus's identity: its ServiceAccount, the token Secret the token controller fills, and read
    access to what Kubernetes service discovery watches, in `namespaces` only."""
    sa = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": TOKEN_SECRET, "namespace": NAMESPACE,
                      "annotations": {"kubernetes.io/service-account.name": SERVICE_ACCOUNT}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "virtmigrate-local-prometheus"},
         "rules": [{"apiGroups": [""], "resources": ["services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]}]},
        *({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": "virtmigrate-local-prometheus", "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                       "name": "virtmigrate-local-prometheus"},
           "subjects": [sa]} for ns in namespaces),
    ]


def external_backend(service: JSON, *, address: str, port: int) -> list[JSON]:
    """`service` without its selector, and its EndpointSlice naming `address`:`port` for each of its ports:
    how Kubernetes fronts a backend that runs outside the cluster (here: the controller process of a node
    runner cluster, listening in its metrics namespace). The slice is ours (managed-by), so the
    endpointslice controller leaves it alone."""
    svc = copy.deepcopy(service)
    svc["spec"].pop("selector", None)
    meta = svc["metadata"]
    meta.setdefault("annotations", {})["virtmigrate.kubevirt.io/backend"] = (
        "the controller process of the local cluster's node runner mode, outside the cluster (README)")
    return [svc, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": f"{meta['name']}-local", "namespace": meta["namespace"],
                     "labels": {"kubernetes.io/service-name": meta["name"],
                                "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
        "ports": [{"name": p["name"], "port": port, "protocol": p.get("protocol", "TCP")}
                  for p in svc["spec"]["ports"]],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }]


def binary() -> Path:
    """The Prometheus hack/build-prometheus.sh built (make setup runs it)."""
    path = cache_dir() / "prometheus-current" / "prometheus"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run hack/build-prometheus.sh (make setup does)")
    return path


def load(path: Path) -> JSON:
    doc: JSON = yaml.safe_load(path.read_text())
    return doc


class LocalPrometheus:
    """The local cluster's Prometheus, rooted at `<state>/prometheus`."""

    def __init__(self, state: Path) -> None:
        self.state = state / "prometheus"

    @property
    def port(self) -> int:
        """Chosen once on 127.0.0.1 and kept, like the control plane's ports."""
        f = self.state / "prometheus.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            return int(json.loads(f.read_text())["port"])
        self.state.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        f.write_text(json.dumps({"port": port}))
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return procs.alive(PROMETHEUS, self.state)

    def up(self, *, monitor: JSON, rule: JSON, api_server: str, ca_file: Path,
           apply: Callable[[str, list[JSON]], None], kubectl: Callable[..., str], pods_of: JSON | None = None,
           timeout: float = 60) -> None:
        """Apply Prometheus's identity (`apply(name, objects)`), write its token, configuration and rules
        (reloading a running Prometheus when they changed), start it unless it runs, wait until it is ready."""
        apply("prometheus-access", access_objects(_watched_namespaces(monitor)))
        self.state.mkdir(parents=True, exist_ok=True)
        token = self.state / "token"
        if not token.exists():  # the Secret's token lives as long as the cluster's state
            token.write_text(self._token(kubectl, timeout))
            token.chmod(0o600)
        rules = self.state / "rules.yml"
        changed = _write(rules, overrides_header(rule, FOR_OVERRIDES)
                         + yaml.safe_dump(rule_file(rule, for_overrides=FOR_OVERRIDES), sort_keys=False))
        scrapes = scrape_configs(monitor, api_server=api_server, ca_file=str(ca_file), token_file=str(token),
                                 interval=INTERVAL, pods_of=pods_of)
        config = self.state / "prometheus.yml"
        changed |= _write(config, "# Written by virtmigrate.local.prometheus from manifests/monitoring/.\n"
                          + yaml.safe_dump(prometheus_config(scrapes, rule_files=[str(rules)], interval=INTERVAL),
                                           sort_keys=False))
        pid = procs.pid(PROMETHEUS, self.state)
        started = None
        if pid is not None and changed:
            os.kill(pid, signal.SIGHUP)  # Prometheus reloads its configuration and rule files
        elif pid is None:
            started = procs.start(PROMETHEUS, [str(binary()), f"--config.file={config}",
                                               f"--storage.tsdb.path={self.state / 'data'}",
                                               f"--web.listen-address=127.0.0.1:{self.port}",
                                               "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                                  self.state)
        self._wait_ready(timeout, started)

    def _token(self, kubectl: Callable[..., str], timeout: float) -> str:
        """The ServiceAccount token the kube-controller-manager's token controller writes into the Secret."""
        deadline = time.monotonic() + timeout
        while True:
            data = kubectl("-n", NAMESPACE, "get", "secret", TOKEN_SECRET, "-o", "jsonpath={.data.token}")
            if data:
                return base64.b64decode(data).decode()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Secret {NAMESPACE}/{TOKEN_SECRET} got no token after {timeout:.0f}s "
                                   "(the kube-controller-manager's token controller fills it)")
            time.sleep(0.2)

    def _wait_ready(self, timeout: float, started: subprocess.Popen[bytes] | None) -> None:
        """Until /-/ready answers; fails at once when the process exits (`started`: the one just started,
        whose exit its Popen sees; its pid file may name a child that has not exec'd yet)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
            gone = started.poll() is not None if started is not None else not self.running()
            if time.monotonic() > deadline or gone:
                tail = (self.state / "logs" / f"{PROMETHEUS}.log").read_text(errors="replace")[-3000:]
                raise errors.ConfigError(f"Prometheus at {self.url} not ready after {timeout:.0f}s; log tail:\n{tail}")
            time.sleep(0.1)

    def api(self, path: str, **params: str) -> Any:
        """GET Prometheus's HTTP API (`/api/v1/...`) and return its `data`."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise errors.ConfigError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def down(self) -> bool:
        """Stop Prometheus and remove its state; True if it was running."""
        stopped = procs.stop(PROMETHEUS, self.state, grace=10)
        shutil.rmtree(self.state, ignore_errors=True)
        return stopped


def _write(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it holds it already; True if it changed."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.write_text(text)
    return True
