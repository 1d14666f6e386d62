"""The local cluster's real Prometheus (virtmigrate.local.prometheus): it finds the controller through Kubernetes
service discovery as the ServiceMonitor says, the PrometheusRule's failing-migrations alert fires on failed
Migrations, and every query of the Grafana dashboard returns series once a migration has run. Only
Prometheus's HTTP API is asked; the waits are bounded and nothing is timed."""

from __future__ import annotations

import math
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import create_migration, running_vm, wait_phase
from tests.unit.test_alerts import dashboard_exprs, rule_groups
from virtmigrate.local import metricsnet

ALERT = "VirtMigrateMigrationsFailing"
JOB = "virtmigrate-controller-metrics"  # the Service's name: the ServiceMonitor sets no jobLabel
# Grafana's interval variables: a panel zoomed to the test's time range would compute about this window.
_GRAFANA_INTERVALS = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}")


def _controller_targets(lc: Any) -> list[dict[str, Any]]:
    return [t for t in lc.prometheus.api("/api/v1/targets")["activeTargets"]
            if t["labels"].get("job") == JOB and t["health"] == "up"]


def _value(lc: Any, expr: str) -> float:
    result = lc.prometheus.api("/api/v1/query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_finds_the_controller_and_loads_the_rules(local_cluster: Any) -> None:
    kubelet = local_cluster.node_mode == "kubelet"
    replicas = 2 if kubelet else 1  # the Deployment's pods, or the controller process of a node runner cluster
    targets = wait_for("Prometheus scraping the controller through the metrics Service", lambda: len(
        found := _controller_targets(local_cluster)) == replicas and found, timeout=60)
    for t in targets:
        labels, discovered = t["labels"], t["discoveredLabels"]
        assert (labels["namespace"], labels["service"], labels["endpoint"]) == ("virtmigrate-system", JOB, "metrics")
        if kubelet:  # the pods the Service selects, found by Prometheus itself (README: loopback pod addresses)
            assert discovered["__meta_kubernetes_pod_container_port_name"] == "metrics"
            assert labels["pod"].startswith("virtmigrate-controller-")
        else:  # the Service's own EndpointSlice, which names the host controller
            assert discovered["__meta_kubernetes_endpointslice_name"] == f"{JOB}-local"
            assert discovered["__meta_kubernetes_service_name"] == JOB
            _assert_in_the_metrics_namespace(local_cluster.metrics_net, t)
    loaded = {g["name"]: sorted(r["name"] for r in g["rules"]) for g in local_cluster.prometheus.api(
        "/api/v1/rules")["groups"]}
    assert loaded == {g["name"]: sorted(r["alert"] for r in g["rules"]) for g in rule_groups()["groups"]}


def _assert_in_the_metrics_namespace(net: metricsnet.MetricsNet, target: dict[str, Any]) -> None:
    """The scrape goes to the address of the network namespace the cluster made, never to one of this
    machine's own (the API server refuses loopback endpoints; nothing else may be reached)."""
    assert target["discoveredLabels"]["__address__"] == f"{net.address}:{metricsnet.PORT}"
    assert target["scrapeUrl"].startswith(f"http://{net.address}:{metricsnet.PORT}/")
    def addresses(*ns: str) -> set[str]:
        out = subprocess.run(["ip", *ns, "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True)
        return {line.split()[3].split("/")[0] for line in out.stdout.splitlines()}
    assert net.address in addresses("-n", net.netns)
    assert net.address not in addresses()


def test_failed_migrations_fire_the_failing_migrations_alert(local_cluster: Any, kubectl: Any, kube: Any,
                                                             namespace: str) -> None:
    failed = 'virtmigrate_migration_results_total{result="Failed", reason!="Cancelled"}'
    # The controller exports every ending at 0 before it happens; once scraped, a first failure counts.
    wait_for("the controller's VMNotFound result series in Prometheus", lambda: local_cluster.prometheus.api(
        "/api/v1/query", query='virtmigrate_migration_results_total{reason="VMNotFound"}')["result"], timeout=60)
    # The alert: over 30 minutes more than a quarter failed, and at least three. Earlier tests' migrations
    # count too, so fail enough to cross both bounds whatever they left.
    total = _value(local_cluster, "sum(increase(virtmigrate_migration_results_total[30m]))")
    already = _value(local_cluster, f"sum(increase({failed}[30m]))")
    count = max(3, math.ceil((total - 4 * already) / 3) + 2)
    before = _value(local_cluster, 'sum(virtmigrate_migration_results_total{reason="VMNotFound"})')
    for i in range(count):  # a VM name each: the controller keeps only the newest 5 finished Migrations per VM
        create_migration(kubectl, f"nothing-{i}", vm=f"no-such-vm-{i}")
    for i in range(count):
        assert wait_phase(kube, namespace, ("Failed",), f"nothing-{i}", timeout=60)["status"]["reason"] == "VMNotFound"
    wait_for(f"Prometheus to count the {count} VMNotFound failures", lambda: _value(
        local_cluster, 'sum(virtmigrate_migration_results_total{reason="VMNotFound"})') >= before + count, timeout=60)

    def firing() -> list[dict[str, Any]]:
        return [a for a in local_cluster.prometheus.api("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == ALERT and a["state"] == "firing"]
    alert = wait_for(f"{ALERT} firing", firing, timeout=120)[0]
    assert alert["labels"]["severity"] == "warning"
    assert "failed" in alert["annotations"]["description"]


def test_every_dashboard_query_returns_series_after_a_migration(local_cluster: Any, kubectl: Any, kube: Any,
                                                                namespace: str, guest_kernel: Path) -> None:
    began = time.monotonic()
    running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl)
    assert wait_phase(kube, namespace, ("Succeeded", "Failed"))["status"]["phase"] == "Succeeded"
    exprs = dashboard_exprs()
    assert exprs

    def empty() -> dict[str, Any]:
        window = f"{math.ceil(time.monotonic() - began) + 10}s"  # from before the VM started until now
        out = {}
        for expr in exprs:
            query = _GRAFANA_INTERVALS.sub(window, expr)
            assert "$" not in query, f"a dashboard variable this test does not know: {expr}"
            result = local_cluster.prometheus.api("/api/v1/query", query=query)["result"]
            if not [s for s in result if not math.isnan(float(s["value"][1]))]:
                out[expr] = result
        return out
    last: dict[str, Any] = {}

    def all_answer() -> bool:
        nonlocal last
        last = empty()
        return not last
    try:
        wait_for("every dashboard query to return a series with a value", all_answer, timeout=90, interval=2)
    except AssertionError:
        raise AssertionError(f"dashboard queries without a series (or only NaN): {last}") from None
