"""merge_constraints: the target pod's node constraints, and contradictions that fail the migration."""

from __future__ import annotations

from typing import Any

import pytest

from virtmigrate.scheduler import Conflict, Contradiction, Merged, merge_constraints, node_matches

SOURCE = "node0"
EXCLUDE_HOST = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [SOURCE]}
EXCLUDE_NAME = {"key": "metadata.name", "operator": "NotIn", "values": [SOURCE]}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": op}
    if op not in ("Exists", "DoesNotExist"):
        out["values"] = list(values)
    return out


def term(*exprs: dict[str, Any], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"matchExpressions": list(exprs)}
    if fields:
        out["matchFields"] = fields
    return out


def merge(vm_sel: dict[str, str] | None = None, terms: list[dict[str, Any]] | None = None,
          mig_sel: dict[str, str] | None = None, default: dict[str, str] | None = None,
          tolerations: list[dict[str, Any]] | None = None) -> Merged | Contradiction:
    return merge_constraints(vm_sel, terms, vm_tolerations=tolerations, migration_node_selector=mig_sel,
                             source_node=SOURCE, default_selector=default, vm_name="testvm", migration_name="m1")


@pytest.mark.parametrize(("vm_sel", "mig_sel", "default", "want"), [
    pytest.param({"zone": "a"}, {"zone": "a"}, None, {"zone": "a"}, id="same-key-same-value"),
    pytest.param({"zone": "a"}, {"tier": "gold"}, None, {"zone": "a", "tier": "gold"}, id="disjoint-keys-union"),
    pytest.param(None, None, {"virt": "yes"}, {"virt": "yes"}, id="default-fills-empty"),
    pytest.param({"virt": "no"}, None, {"virt": "yes"}, {"virt": "no"}, id="default-yields-to-vm"),
    pytest.param(None, {"virt": "no"}, {"virt": "yes"}, {"virt": "no"}, id="default-yields-to-migration"),
    pytest.param({"zone": "a"}, {"tier": "t"}, {"virt": "yes", "zone": "c"},
                 {"virt": "yes", "zone": "a", "tier": "t"}, id="default-partly-overridden"),
])
def test_merged_node_selector(vm_sel: dict[str, str] | None, mig_sel: dict[str, str] | None,
                              default: dict[str, str] | None, want: dict[str, str]) -> None:
    got = merge(vm_sel, None, mig_sel, default)
    assert isinstance(got, Merged)
    assert got.node_selector == want
    assert got.required_terms == [{"matchExpressions": [EXCLUDE_HOST], "matchFields": [EXCLUDE_NAME]}]


def test_default_yields_to_a_key_the_vm_affinity_mentions() -> None:
    got = merge(None, [term(expr("zone", "In", "a", "b"))], None, {"zone": "c"})
    assert isinstance(got, Merged)
    assert got.node_selector == {}
    assert node_matches({"zone": "a"}, got, node_name="n1")


def test_pod_spec_fields_carry_affinity_and_tolerations() -> None:
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "vm", "effect": "NoSchedule"}]
    got = merge({"zone": "a"}, [term(expr("gpu", "Exists"))], None, None, tolerations)
    assert isinstance(got, Merged)
    assert got.pod_spec_fields() == {
        "nodeSelector": {"zone": "a"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [expr("gpu", "Exists"), EXCLUDE_HOST], "matchFields": [EXCLUDE_NAME]}]}}},
        "tolerations": tolerations,
    }


@pytest.mark.parametrize(("vm_sel", "terms", "mig_sel", "conflicts"), [
    pytest.param({"zone": "a"}, None, {"zone": "b"},
                 [Conflict("zone", "zone=a (spec.nodeSelector)", "zone=b (spec.nodeSelector)")],
                 id="contradiction-zone"),
    pytest.param({"zone": "a", "tier": "gold"}, None, {"zone": "b", "tier": "silver"},
                 [Conflict("zone", "zone=a (spec.nodeSelector)", "zone=b (spec.nodeSelector)"),
                  Conflict("tier", "tier=gold (spec.nodeSelector)", "tier=silver (spec.nodeSelector)")],
                 id="every-conflicting-key-listed"),
    pytest.param(None, [term(expr("zone", "In", "a", "c"))], {"zone": "b"},
                 [Conflict("zone", "zone In [a, c] (node affinity term 1)", "zone=b (spec.nodeSelector)")],
                 id="selector-vs-In"),
    pytest.param(None, [term(expr("zone", "NotIn", "b"))], {"zone": "b"},
                 [Conflict("zone", "zone NotIn [b] (node affinity term 1)", "zone=b (spec.nodeSelector)")],
                 id="selector-vs-NotIn"),
    pytest.param(None, [term(expr("gpu", "DoesNotExist"))], {"gpu": "yes"},
                 [Conflict("gpu", "gpu DoesNotExist (node affinity term 1)", "gpu=yes (spec.nodeSelector)")],
                 id="selector-vs-DoesNotExist"),
    pytest.param(None, [term(expr("cpus", "Gt", "8"))], {"cpus": "4"},
                 [Conflict("cpus", "cpus Gt 8 (node affinity term 1)", "cpus=4 (spec.nodeSelector)")],
                 id="selector-vs-Gt"),
    pytest.param(None, [term(expr("cpus", "Lt", "8"))], {"cpus": "many"},
                 [Conflict("cpus", "cpus Lt 8 (node affinity term 1)", "cpus=many (spec.nodeSelector)")],
                 id="selector-not-an-integer-vs-Lt"),
    pytest.param(None, [term(expr("zone", "In", "a")), term(expr("zone", "In", "b"))], {"zone": "c"},
                 [Conflict("zone", "zone In [a] (node affinity term 1)", "zone=c (spec.nodeSelector)"),
                  Conflict("zone", "zone In [b] (node affinity term 2)", "zone=c (spec.nodeSelector)")],
                 id="ored-terms-all-fail"),
    pytest.param({"kubernetes.io/hostname": SOURCE}, None, None,
                 [Conflict("kubernetes.io/hostname", "kubernetes.io/hostname=node0 (spec.nodeSelector)",
                           "kubernetes.io/hostname NotIn [node0] (a migration must leave its source node)")],
                 id="vm-pinned-to-source-by-selector"),
    pytest.param(None, [term(fields=[expr("metadata.name", "In", SOURCE)])], None,
                 [Conflict("metadata.name", "metadata.name In [node0] (node affinity term 1)",
                           "metadata.name NotIn [node0] (a migration must leave its source node)")],
                 id="vm-pinned-to-source-by-field"),
    pytest.param(None, None, {"kubernetes.io/hostname": SOURCE},
                 [Conflict("kubernetes.io/hostname", "",
                           "kubernetes.io/hostname=node0 (spec.nodeSelector), "
                           "kubernetes.io/hostname NotIn [node0] (a migration must leave its source node)")],
                 id="migration-asks-for-the-source"),
    pytest.param(None, [term(expr("cpus", "Gt", "3"), expr("cpus", "Lt", "4"))], None,
                 [Conflict("cpus", "cpus Gt 3 (node affinity term 1), cpus Lt 4 (node affinity term 1)", "")],
                 id="vm-own-Gt-Lt-leave-no-integer"),
    pytest.param(None, [{}], None, [Conflict("node affinity term 1", "an empty term, which matches no node", "")],
                 id="empty-term-matches-nothing"),
    pytest.param(None, [term(expr("zone", "Gt", "x"))], None,
                 [Conflict("zone", "zone Gt x (node affinity term 1)", "")], id="invalid-Gt-value"),
])
def test_contradictions(vm_sel: dict[str, str] | None, terms: list[dict[str, Any]] | None,
                        mig_sel: dict[str, str] | None, conflicts: list[Conflict]) -> None:
    got = merge(vm_sel, terms, mig_sel)
    assert isinstance(got, Contradiction), got
    assert list(got.conflicts) == conflicts
    for c in conflicts:
        assert c.key in got.message


def test_contradiction_message_names_both_objects_and_the_fix() -> None:
    got = merge({"zone": "a"}, None, {"zone": "b"})
    assert isinstance(got, Contradiction)
    assert "VM testvm requires zone=a (spec.nodeSelector) but Migration m1 requires zone=b" in got.message
    assert "Remove or change one of them" in got.message


@pytest.mark.parametrize(("terms", "mig_sel", "kept"), [
    pytest.param([term(expr("zone", "In", "a")), term(expr("zone", "In", "b"))], {"zone": "b"}, [1],
                 id="ored-terms-one-survives"),
    pytest.param([term(expr("cpus", "Gt", "8"))], {"cpus": "16"}, [0], id="Gt-holds"),
    pytest.param([term(expr("cpus", "Gt", "8"), expr("cpus", "Lt", "10"))], None, [0], id="Gt-Lt-leave-9"),
    pytest.param([term(expr("cpus", "Gt", "8"), expr("cpus", "Lt", "10"), expr("cpus", "NotIn", "9"))], None, [0],
                 id="NotIn-9-leaves-09"),
    pytest.param([term(expr("zone", "NotIn", "a")), term(expr("kubernetes.io/hostname", "In", SOURCE))], None, [0],
                 id="source-pinning-term-dropped"),
    pytest.param([term(expr("gpu", "Exists"), expr("gpu", "NotIn", "old"))], {"gpu": "new"}, [0],
                 id="Exists-NotIn-vs-selector"),
])
def test_satisfiable_terms_are_kept(terms: list[dict[str, Any]], mig_sel: dict[str, str] | None,
                                    kept: list[int]) -> None:
    got = merge(None, terms, mig_sel)
    assert isinstance(got, Merged), got
    want = [{**terms[i], "matchExpressions": [*terms[i]["matchExpressions"], EXCLUDE_HOST],
             "matchFields": [EXCLUDE_NAME]} for i in kept]
    assert got.required_terms == want


def test_source_node_is_required() -> None:
    with pytest.raises(ValueError, match="source_node"):
        merge_constraints(None, None, vm_tolerations=None, migration_node_selector=None, source_node="")


@pytest.mark.parametrize(("labels", "name", "want"), [
    pytest.param({"zone": "a", "kubernetes.io/hostname": "n1"}, "n1", True, id="match"),
    pytest.param({"zone": "b", "kubernetes.io/hostname": "n1"}, "n1", False, id="selector-mismatch"),
    pytest.param({"zone": "a", "kubernetes.io/hostname": SOURCE}, SOURCE, False, id="source"),
    pytest.param({"zone": "a"}, SOURCE, False, id="source-without-hostname-label"),
    pytest.param({"zone": "a", "kubernetes.io/hostname": SOURCE}, "renamed", False, id="source-hostname-label"),
])
def test_node_matches(labels: dict[str, str], name: str, want: bool) -> None:
    got = merge({"zone": "a"})
    assert isinstance(got, Merged)
    assert node_matches(labels, got, node_name=name) is want
