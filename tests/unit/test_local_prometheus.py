"""The local cluster's Prometheus configuration, derived from manifests/monitoring/ (virtmigrate.local.prometheus):
the ServiceMonitor's scrape configuration as the Prometheus Operator generates it, the PrometheusRule's groups
as a rule file promtool accepts, and the selector-less Service + EndpointSlice of a node runner cluster."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.unit.test_alerts import PROMTOOL, REPO
from virtmigrate import errors
from virtmigrate.local import prometheus as prom

MONITOR = prom.load(REPO / "manifests" / "monitoring" / "servicemonitor.yaml")
RULE = prom.load(REPO / "manifests" / "monitoring" / "prometheusrule.yaml")
SERVICE = prom.load(REPO / "manifests" / "service.yaml")
SD = {"api_server": "https://127.0.0.1:6443", "ca_file": "/s/ca.crt", "token_file": "/s/token", "interval": "2s"}


def _relabel(cfg: dict[str, Any], target: str) -> list[dict[str, Any]]:
    return [r for r in cfg["relabel_configs"] if r.get("target_label") == target]


def test_endpointslice_scrape_of_the_service_monitor() -> None:
    [cfg] = prom.scrape_configs(MONITOR, **SD)
    assert cfg["job_name"] == "serviceMonitor/virtmigrate-system/virtmigrate-controller/0"
    assert (cfg["scrape_interval"], cfg["scrape_timeout"]) == ("2s", "2s")  # 10s timeout capped by the interval
    assert (cfg["metrics_path"], cfg["scheme"]) == ("/metrics", "http")
    assert cfg["kubernetes_sd_configs"] == [{
        "role": "endpointslice", "api_server": "https://127.0.0.1:6443", "tls_config": {"ca_file": "/s/ca.crt"},
        "authorization": {"credentials_file": "/s/token"}, "namespaces": {"names": ["virtmigrate-system"]}}]
    keeps = [r for r in cfg["relabel_configs"] if r.get("action") == "keep"]
    assert keeps == [
        {"action": "keep", "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_component",
                                             "__meta_kubernetes_service_labelpresent_app_kubernetes_io_component"],
         "regex": "(metrics);true"},
        {"action": "keep", "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name",
                                             "__meta_kubernetes_service_labelpresent_app_kubernetes_io_name"],
         "regex": "(virtmigrate\\-controller);true"},
        {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"], "regex": "metrics"},
    ]
    assert _relabel(cfg, "job") == [{"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"}]
    assert _relabel(cfg, "endpoint") == [{"replacement": "metrics", "target_label": "endpoint"}]
    assert {r["target_label"] for r in cfg["relabel_configs"] if "target_label" in r} == {
        "node", "pod", "namespace", "service", "container", "job", "endpoint"}


def test_pod_scrape_selects_what_the_service_would() -> None:
    [cfg] = prom.scrape_configs(MONITOR, **SD, pods_of=SERVICE)
    assert cfg["kubernetes_sd_configs"][0]["role"] == "pod"
    keeps = [r for r in cfg["relabel_configs"] if r.get("action") == "keep"]
    assert keeps == [
        {"action": "keep", "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                                             "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name"],
         "regex": "(virtmigrate\\-controller);true"},
        {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics"},
    ]
    assert _relabel(cfg, "service") == [{"replacement": "virtmigrate-controller-metrics", "target_label": "service"}]


@pytest.mark.parametrize("change, message", [
    pytest.param(lambda sm, svc: sm["spec"]["selector"].update(matchExpressions=[]), "only matchLabels",
                 id="match-expressions"),
    pytest.param(lambda sm, svc: sm["spec"]["endpoints"][0].update(relabelings=[]), "not supported",
                 id="endpoint-relabelings"),
    pytest.param(lambda sm, svc: sm["spec"].update(namespaceSelector={"any": True}), "any",
                 id="any-namespace"),
    pytest.param(lambda sm, svc: svc["metadata"]["labels"].pop("app.kubernetes.io/component"), "selects",
                 id="service-not-selected"),
    pytest.param(lambda sm, svc: svc["spec"]["ports"][0].update(name="web"), "no port named",
                 id="service-port-missing"),
])
def test_what_the_derivation_cannot_honour_is_refused(change: Any, message: str) -> None:
    sm, svc = copy.deepcopy(MONITOR), copy.deepcopy(SERVICE)
    change(sm, svc)
    with pytest.raises(errors.ConfigError, match=message):
        prom.scrape_configs(sm, **SD, pods_of=svc)


def test_rule_file_is_the_rules_groups_with_the_local_for(tmp_path: Path) -> None:
    out = prom.rule_file(RULE, for_overrides={"VirtMigrateMigrationsFailing": "4s"})
    changed = copy.deepcopy(RULE["spec"]["groups"])
    changed[0]["rules"][0]["for"] = "4s"
    assert changed[0]["rules"][0]["alert"] == "VirtMigrateMigrationsFailing"
    assert out == {"groups": changed}
    assert RULE["spec"]["groups"][0]["rules"][0]["for"] == "5m"  # the manifest's object is untouched
    header = prom.overrides_header(RULE, {"VirtMigrateMigrationsFailing": "4s"})
    assert "#   VirtMigrateMigrationsFailing: for 5m -> 4s" in header
    (tmp_path / "rules.yml").write_text(header + yaml.safe_dump(out, sort_keys=False))
    proc = subprocess.run([PROMTOOL, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_override_of_no_alert_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match="VirtMigrateGone"):
        prom.rule_file(RULE, for_overrides={"VirtMigrateGone": "1s"})


def test_the_local_overrides_name_alerts_of_the_rule() -> None:
    prom.rule_file(RULE, for_overrides=prom.FOR_OVERRIDES)


def test_external_backend_is_the_service_without_selector_and_its_slice() -> None:
    svc, eps = prom.external_backend(SERVICE, address="10.255.40.2", port=8080)
    expected = copy.deepcopy(SERVICE)
    del expected["spec"]["selector"]
    assert svc["spec"] == expected["spec"] and svc["metadata"]["name"] == "virtmigrate-controller-metrics"
    assert svc["metadata"]["labels"] == SERVICE["metadata"]["labels"]  # still what the ServiceMonitor selects
    assert "selector" in SERVICE["spec"]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "virtmigrate-controller-metrics"
    assert eps["metadata"]["namespace"] == "virtmigrate-system"
    assert eps["ports"] == [{"name": "metrics", "port": 8080, "protocol": "TCP"}]
    assert eps["endpoints"] == [{"addresses": ["10.255.40.2"], "conditions": {"ready": True}}]


def test_access_is_read_only_and_limited_to_the_watched_namespaces() -> None:
    objs = prom.access_objects(["virtmigrate-system"])
    [role] = [o for o in objs if o["kind"] == "ClusterRole"]
    assert {v for r in role["rules"] for v in r["verbs"]} == {"get", "list", "watch"}
    assert [(o["metadata"]["namespace"], o["roleRef"]["name"]) for o in objs if o["kind"] == "RoleBinding"] == [
        ("virtmigrate-system", role["metadata"]["name"])]
    assert not [o for o in objs if o["kind"] == "ClusterRoleBinding"]


def test_every_series_the_alerts_and_dashboard_rate_is_exported_at_zero_before_it_happens() -> None:
    from virtmigrate.api.exitcodes import OUTCOMES, UNKNOWN_OUTCOME
    from virtmigrate.controller.metrics import MigrationMetrics
    from virtmigrate.controller.migration.decide import FINISHED_RESULTS

    reg = CollectorRegistry()
    MigrationMetrics(reg).initialize(FINISHED_RESULTS, controller="migration", sync_outcomes=("ok", "error"))
    for o in (*OUTCOMES.values(), UNKNOWN_OUTCOME):
        assert reg.get_sample_value("virtmigrate_migration_results_total",
                                    {"result": o.phase, "reason": o.reason}) == 0, o
    assert reg.get_sample_value("virtmigrate_migration_results_total",
                                {"result": "Failed", "reason": "VMNotFound"}) == 0
    for result in ("Succeeded", "Failed"):
        assert reg.get_sample_value("virtmigrate_migration_duration_seconds_count", {"result": result}) == 0
    for phase in ("Pending", "Scheduling", "Scheduled", "TargetReady", "Running"):
        assert reg.get_sample_value("virtmigrate_migration_phase_seconds_count", {"phase": phase}) == 0
    assert reg.get_sample_value("virtmigrate_controller_syncs_total",
                                {"controller": "migration", "outcome": "error"}) == 0
    assert reg.get_sample_value("virtmigrate_controller_event_to_action_seconds_count",
                                {"controller": "migration"}) == 0
