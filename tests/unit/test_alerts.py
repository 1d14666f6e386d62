"""The PrometheusRule (manifests/monitoring/prometheusrule.yaml) and the Grafana dashboard
(manifests/dashboards/virtmigrate.json) are checked against the real tools and the real metrics.

- `promtool check rules` (Debian's prometheus package, /usr/bin/promtool) parses every expression
  and annotation template. No PromQL parser is written here.
- Every metric name the rules and the dashboard mention is exported by the controller: the names are
  read from a registry filled by the controller's own metric classes (virtmigrate.controller.metrics,
  virtmigrate.workqueue.metrics, virtmigrate.informer.metrics), not from a list kept by hand.
- `promtool test rules` evaluates each alert on synthetic series that carry only those exported
  names: each fires when its condition holds and stays silent when it does not. A rule that used a
  name the controller does not export could not fire here (or, for `absent`, could not stay silent).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "manifests" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = REPO / "manifests" / "dashboards" / "virtmigrate.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Names our metrics start with; any such token in an expression must be an exported sample name.
OUR_PREFIXES = ("virtmigrate_", "workqueue_", "reflector_", "leader_election_")
_TOKEN = re.compile(r"(?<![A-Za-z0-9_:\"'$])((?:" + "|".join(OUR_PREFIXES) + r")[A-Za-z0-9_:]*)")


def exported_sample_names() -> set[str]:
    """Sample names the controller process exposes on /metrics, from its real metric classes."""
    from virtmigrate.clock import FakeClock
    from virtmigrate.controller.metrics import MigrationMetrics
    from virtmigrate.informer.metrics import ReflectorMetrics
    from virtmigrate.workqueue.metrics import QueueMetrics

    reg = CollectorRegistry()
    metrics = MigrationMetrics(reg)
    metrics.watch_phases(list)
    queue = QueueMetrics("migrations", FakeClock(), reg)
    ReflectorMetrics("migrations", reg)
    names: set[str] = set()
    for family in reg.collect():  # family.name is the base name: a counter's lacks "_total"
        n = family.name
        names |= {
            "counter": {f"{n}_total", f"{n}_created"},
            "histogram": {f"{n}_bucket", f"{n}_sum", f"{n}_count", f"{n}_created"},
            "summary": {n, f"{n}_sum", f"{n}_count", f"{n}_created"},
        }.get(family.type, {n})
    del queue  # kept alive until the scrape above: its in-progress gauges are computed on scrape
    return names


def rule_groups() -> dict[str, Any]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule"
    return {"groups": doc["spec"]["groups"]}


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if "expr" in t]


def our_metric_tokens(expr: str) -> set[str]:
    """Tokens of `expr` that start with one of our metric prefixes (a lexical scan, not a parser:
    label values are quoted and so skipped; every such token names a metric)."""
    return set(_TOKEN.findall(expr))


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_sample_names()


def test_promtool_is_installed() -> None:
    assert Path(PROMTOOL).exists(), "promtool is missing: apt-get install prometheus (Debian)"


def test_rules_parse_with_promtool(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    proc = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule_groups()['groups'])} rules found" in proc.stdout


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert {"VirtMigrateMigrationsFailing", "VirtMigrateMigrationStuck", "VirtMigrateWorkQueueGrowing",
            "VirtMigrateNoLeader"} <= set(alerts())
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_the_token_scan_sees_metric_names() -> None:
    assert our_metric_tokens('sum(rate(workqueue_adds_total{name="x"}[5m])) / virtmigrate_migrations') == {
        "workqueue_adds_total", "virtmigrate_migrations"}
    assert our_metric_tokens('x{reason="virtmigrate_not_a_metric"}') == set()


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_metric_an_alert_uses_is_exported(alert: str, exported: set[str]) -> None:
    used = our_metric_tokens(alerts()[alert]["expr"])
    assert used, f"{alert} uses none of our metrics"
    assert used <= exported, f"{alert} uses metrics the controller does not export: {sorted(used - exported)}"


def test_every_metric_the_dashboard_uses_is_exported(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert exprs
    used = set().union(*(our_metric_tokens(e) for e in exprs))
    assert used <= exported, f"the dashboard uses metrics the controller does not export: {sorted(used - exported)}"


# ---------------------------------------------------------------------------------------------
# promtool test rules: each alert fires when it should and stays silent when it should not.

FAILED = 'virtmigrate_migration_results_total{result="Failed",reason="MigrationFailed"}'
SUCCEEDED = 'virtmigrate_migration_results_total{result="Succeeded",reason="Migrated"}'
CANCELLED = 'virtmigrate_migration_results_total{result="Failed",reason="Cancelled"}'


def _phases(**counts: str) -> list[dict[str, str]]:
    """virtmigrate_migrations{phase} series; phases not given stay 0 (the collector exports every phase)."""
    all_phases = ["New", "Pending", "Scheduling", "Scheduled", "TargetReady", "Running", "Succeeded", "Failed"]
    return [{"series": f'virtmigrate_migrations{{phase="{p}"}}', "values": counts.get(p, "0x120")}
            for p in all_phases]


def _depth(values: str) -> dict[str, str]:
    return {"series": 'workqueue_depth{name="migrations"}', "values": values}


# (id, input series, eval time, alert name, expected labels of firing alerts; [] = silent)
CASES: list[tuple[str, list[dict[str, str]], str, str, list[dict[str, str]]]] = [
    ("failing-fires", [{"series": FAILED, "values": "0+1x60"}, {"series": SUCCEEDED, "values": "0+1x60"},
                       *_phases()],
     "40m", "VirtMigrateMigrationsFailing", [{"severity": "warning"}]),
    ("failing-silent-when-mostly-succeeding",
     [{"series": FAILED, "values": "0+0.1x60"}, {"series": SUCCEEDED, "values": "0+2x60"}, *_phases()],
     "40m", "VirtMigrateMigrationsFailing", []),
    ("failing-ignores-cancellations",
     [{"series": CANCELLED, "values": "0+1x60"}, {"series": SUCCEEDED, "values": "0+0x60"},
      {"series": FAILED, "values": "0x60"}, *_phases()],
     "40m", "VirtMigrateMigrationsFailing", []),
    ("location-unknown-fires",
     [{"series": 'virtmigrate_migration_results_total{result="Failed",reason="AgentFailed"}',
       "values": "0x10 1x50"}, *_phases()],
     "15m", "VirtMigrateGuestLocationUnknown", [{"severity": "critical", "reason": "AgentFailed"}]),
    ("location-unknown-silent-for-ordinary-failures", [{"series": FAILED, "values": "0x10 1x50"}, *_phases()],
     "15m", "VirtMigrateGuestLocationUnknown", []),
    ("stuck-fires", _phases(Scheduling="1x60"), "30m", "VirtMigrateMigrationStuck",
     [{"severity": "warning", "phase": "Scheduling"}]),
    ("stuck-silent-when-phases-move", _phases(Scheduling="1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 "
                                                         "1 0 1 0 1 0 1 0 1 0 1 0 1 0"),
     "30m", "VirtMigrateMigrationStuck", []),
    ("stuck-silent-for-pending", _phases(Pending="5x60"), "30m", "VirtMigrateMigrationStuck", []),
    ("queue-growing-fires", [_depth("20+1x60"), *_phases()], "40m", "VirtMigrateWorkQueueGrowing",
     [{"severity": "warning", "name": "migrations"}]),
    ("queue-silent-when-draining", [_depth("80-1x60"), *_phases()], "40m", "VirtMigrateWorkQueueGrowing", []),
    ("queue-silent-when-small", [_depth("0+0.1x60"), *_phases()], "40m", "VirtMigrateWorkQueueGrowing", []),
    ("sync-errors-fire",
     [{"series": 'virtmigrate_controller_syncs_total{controller="migration",outcome="error"}',
       "values": "0+30x60"}, *_phases()],
     "30m", "VirtMigrateSyncErrors", [{"severity": "warning", "controller": "migration"}]),
    ("sync-ok-silent",
     [{"series": 'virtmigrate_controller_syncs_total{controller="migration",outcome="ok"}', "values": "0+30x60"},
      *_phases()],
     "30m", "VirtMigrateSyncErrors", []),
    ("no-leader-fires", [_depth("0x60")], "10m", "VirtMigrateNoLeader", [{"severity": "critical"}]),
    ("leader-present-silent", _phases(), "10m", "VirtMigrateNoLeader", []),
]


def test_every_alert_has_a_firing_case() -> None:
    assert {c[3] for c in CASES if c[4]} == set(alerts())


@pytest.mark.parametrize(("series", "at", "alert", "want"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_alert_behaviour_with_promtool(tmp_path: Path, exported: set[str], series: list[dict[str, str]],
                                       at: str, alert: str, want: list[dict[str, str]]) -> None:
    for s in series:
        name = s["series"].split("{", 1)[0]
        assert name in exported, f"test input {name} is not a metric the controller exports"
    groups = rule_groups()
    for g in groups["groups"]:
        for r in g["rules"]:
            r.pop("annotations", None)  # templates are checked by `promtool check rules`; here, firing
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": at, "alertname": alert,
                                            "exp_alerts": [{"exp_labels": w} for w in want]}]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
