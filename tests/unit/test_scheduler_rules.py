"""The kube-scheduler rules the scheduler package reproduces: requirement matching, satisfiability of
one key, tolerations, quantities and pod requests."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from virtmigrate.scheduler.labels import Requirement, term_matches, valid_label_key, valid_label_value
from virtmigrate.scheduler.resources import Requests, format_bytes, parse_quantity, pod_requests
from virtmigrate.scheduler.solve import key_satisfiable
from virtmigrate.scheduler.taints import first_untolerated_taint, tolerates


def req(key: str, op: str, *values: str, field: bool = False) -> Requirement:
    return Requirement(key, op, values, field)


@pytest.mark.parametrize(("r", "labels", "name", "want"), [
    pytest.param(req("z", "In", "a", "b"), {"z": "b"}, "n", True, id="In-hit"),
    pytest.param(req("z", "In", "a"), {}, "n", False, id="In-absent"),
    pytest.param(req("z", "NotIn", "a"), {}, "n", True, id="NotIn-absent"),
    pytest.param(req("z", "NotIn", "a"), {"z": "a"}, "n", False, id="NotIn-hit"),
    pytest.param(req("z", "Exists"), {"z": ""}, "n", True, id="Exists-empty-value"),
    pytest.param(req("z", "DoesNotExist"), {"z": "x"}, "n", False, id="DoesNotExist-present"),
    pytest.param(req("c", "Gt", "8"), {"c": "09"}, "n", True, id="Gt-leading-zero"),
    pytest.param(req("c", "Gt", "8"), {"c": "8"}, "n", False, id="Gt-equal"),
    pytest.param(req("c", "Lt", "8"), {"c": "x"}, "n", False, id="Lt-not-integer"),
    pytest.param(req("c", "Lt", "8"), {}, "n", False, id="Lt-absent"),
    pytest.param(req("c", "Gt", "99999999999999999999"), {"c": "1"}, "n", False, id="Gt-overflow-invalid"),
    pytest.param(req("c", "Gt", "1", "2"), {"c": "5"}, "n", False, id="Gt-two-values-invalid"),
    pytest.param(req("z", "In"), {"z": "a"}, "n", False, id="In-no-values-invalid"),
    pytest.param(req("z", "NotIn"), {}, "n", False, id="NotIn-no-values-invalid"),
    pytest.param(req("z", "Exists", "a"), {"z": "a"}, "n", False, id="Exists-with-values-invalid"),
    pytest.param(req("z", "Near", "a"), {"z": "a"}, "n", False, id="unknown-operator"),
    pytest.param(req("z", "In", "-a"), {"z": "-a"}, "n", False, id="invalid-label-value"),
    pytest.param(req("metadata.name", "In", "n", field=True), {}, "n", True, id="field-In"),
    pytest.param(req("metadata.name", "NotIn", "n", field=True), {}, "n", False, id="field-NotIn"),
    pytest.param(req("metadata.name", "In", "n", "m", field=True), {}, "n", False, id="field-two-values-invalid"),
    pytest.param(req("metadata.uid", "In", "n", field=True), {}, "n", False, id="field-unknown-key"),
])
def test_requirement_matches(r: Requirement, labels: dict[str, str], name: str, want: bool) -> None:
    assert r.matches(labels, name) is want


def test_empty_term_matches_nothing() -> None:
    assert not term_matches((), {"a": "b"}, "n")


@pytest.mark.parametrize(("key", "want"), [
    pytest.param("zone", True, id="plain"),
    pytest.param("topology.kubernetes.io/zone", True, id="prefixed"),
    pytest.param("a/b/c", False, id="two-slashes"),
    pytest.param("/zone", False, id="empty-prefix"),
    pytest.param("Example.com/zone", False, id="uppercase-prefix"),
    pytest.param("-zone", False, id="leading-dash"),
    pytest.param("z" * 64, False, id="too-long"),
])
def test_valid_label_key(key: str, want: bool) -> None:
    assert valid_label_key(key) is want


def test_valid_label_value() -> None:
    assert valid_label_value("") and valid_label_value("a.b_c-1") and valid_label_value("0" * 63)
    assert not valid_label_value("-1") and not valid_label_value("a" * 64) and not valid_label_value("a b")


@pytest.mark.parametrize(("reqs", "want"), [
    pytest.param([req("z", "In", "a"), req("z", "In", "b")], False, id="In-disjoint"),
    pytest.param([req("z", "In", "a", "b"), req("z", "NotIn", "a")], True, id="In-minus-NotIn"),
    pytest.param([req("z", "Exists"), req("z", "DoesNotExist")], False, id="Exists-DoesNotExist"),
    pytest.param([req("z", "NotIn", "a"), req("z", "DoesNotExist")], True, id="NotIn-DoesNotExist"),
    pytest.param([req("c", "Gt", "3"), req("c", "Lt", "5")], True, id="Gt-Lt-4"),
    pytest.param([req("c", "Gt", "3"), req("c", "Lt", "4")], False, id="Gt-Lt-empty"),
    pytest.param([req("c", "Lt", "0")], False, id="Lt-0-no-negative-labels"),
    pytest.param([req("c", "Gt", "9223372036854775806")], True, id="Gt-max-minus-one"),
    pytest.param([req("c", "Gt", "9223372036854775807")], False, id="Gt-max"),
    pytest.param([req("c", "Gt", "3"), req("c", "Lt", "5"), req("c", "NotIn", "4", "04")], True,
                 id="NotIn-two-spellings"),
    pytest.param([req("c", "Gt", "3"), req("c", "Lt", "5"),
                  req("c", "NotIn", *("0" * pad + "4" for pad in range(63)))], False, id="NotIn-every-spelling"),
    pytest.param([req("c", "Gt", "3"), req("c", "In", "4", "x")], True, id="Gt-In"),
    pytest.param([req("c", "Gt", "3"), req("c", "In", "3", "x")], False, id="Gt-In-none"),
    pytest.param([req("metadata.name", "NotIn", "a", field=True), req("metadata.name", "In", "b", field=True)], True,
                 id="field-ok"),
    pytest.param([req("metadata.name", "In", "a", field=True), req("metadata.name", "In", "b", field=True)], False,
                 id="field-two-names"),
])
def test_key_satisfiable(reqs: list[Requirement], want: bool) -> None:
    assert key_satisfiable(reqs) is want


@pytest.mark.parametrize(("toleration", "taint", "want"), [
    pytest.param({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True,
                 id="Exists-any-effect"),
    pytest.param({"operator": "Exists"}, {"key": "k", "effect": "NoExecute"}, True, id="Exists-every-key"),
    pytest.param({"key": "k", "value": "v", "effect": "NoSchedule"}, {"key": "k", "value": "v",
                 "effect": "NoSchedule"}, True, id="Equal-default-operator"),
    pytest.param({"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute"},
                 {"key": "k", "value": "v", "effect": "NoSchedule"}, False, id="other-effect"),
    pytest.param({"key": "k", "operator": "Equal"}, {"key": "k", "effect": "NoSchedule"}, True, id="empty-values"),
    pytest.param({"key": "k", "operator": "Gt", "value": "1"}, {"key": "k", "value": "5", "effect": "NoSchedule"},
                 False, id="Gt-behind-alpha-gate"),
])
def test_tolerates(toleration: dict[str, str], taint: dict[str, str], want: bool) -> None:
    assert tolerates(toleration, taint) is want


def test_first_untolerated_taint_skips_prefer_no_schedule() -> None:
    taints = [{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "NoSchedule"},
              {"key": "c", "effect": "NoExecute"}]
    assert first_untolerated_taint(taints, [{"key": "b", "operator": "Exists"}]) == taints[2]
    assert first_untolerated_taint(taints, [{"operator": "Exists"}]) is None


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("1Gi", Fraction(2**30), id="Gi"),
    pytest.param("1.5Mi", Fraction(3 * 2**19), id="fraction-Mi"),
    pytest.param("100m", Fraction(1, 10), id="milli"),
    pytest.param("2", Fraction(2), id="plain"),
    pytest.param("1e3", Fraction(1000), id="exponent"),
    pytest.param("1k", Fraction(1000), id="kilo"),
    pytest.param("1G", Fraction(10**9), id="giga"),
    pytest.param(".5", Fraction(1, 2), id="leading-dot"),
    pytest.param(3, Fraction(3), id="int"),
])
def test_parse_quantity(text: object, want: Fraction) -> None:
    assert parse_quantity(text) == want


@pytest.mark.parametrize("text", ["", "1Gb", "Gi", "1.2.3", "1 Gi"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def container(memory: str, cpu: str = "0", **extra: Any) -> dict[str, Any]:
    return {"name": "c", "resources": {"requests": {"memory": memory, "cpu": cpu}}, **extra}


@pytest.mark.parametrize(("spec", "want"), [
    pytest.param({"containers": [container("1Gi", "500m"), container("1Gi", "250m")]},
                 Requests(750, 2 * 2**30), id="sum-of-containers"),
    pytest.param({"containers": [container("1Gi")], "initContainers": [container("3Gi")]},
                 Requests(0, 3 * 2**30), id="init-container-peak"),
    pytest.param({"containers": [container("1Gi")], "initContainers": [container("1Gi", restartPolicy="Always"),
                                                                       container("2Gi")]},
                 Requests(0, 3 * 2**30), id="sidecar-plus-later-init"),
    pytest.param({"containers": [container("1Gi")], "overhead": {"memory": "100Mi"}},
                 Requests(0, 2**30 + 100 * 2**20), id="overhead"),
    pytest.param({"containers": [{"name": "c"}]}, Requests(0, 0), id="no-requests"),
])
def test_pod_requests(spec: dict[str, Any], want: Requests) -> None:
    assert pod_requests({"spec": spec}) == want


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (2**30, 1536, 100, 3 * 2**29)] == ["1Gi", "1.5Ki", "100", "1.5Gi"]
