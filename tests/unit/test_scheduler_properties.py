"""Hypothesis properties of the scheduler package, each over at least 500 examples.

(a) when the merge succeeds, a node satisfies the merged constraints iff it satisfies the VM's,
    the Migration's and the (non-overridden) default constraints and is not the source;
(b) a Contradiction is reported iff no label assignment satisfies both sides;
(c) inputs are never mutated, and outputs share nothing with them;
(d) the source node is never feasible.

The oracle below is written from the Kubernetes rules, independently of virtmigrate.scheduler: a
node is a dict of labels plus a name, drawn from a small universe that holds a witness whenever
one exists for the small alphabets generated here (values of the alphabet, a fresh value, and
integers 0..5 in up to three spellings each).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from virtmigrate.scheduler import Contradiction, Merged, explain_infeasible, merge_constraints, node_matches

HOST = "kubernetes.io/hostname"
SOURCE = "n0"
NUM = "cpus"  # the key Gt/Lt work on, with integer-looking values
KEYS = ["zone", HOST, NUM]
VALUES = ["a", "b", "n0", "n1"]
NUMS = ["1", "2", "01", "x"]
NAMES = ["n0", "n1"]
INTS = ["0", "1", "2", "3"]
UNIVERSE = sorted({*VALUES, *NUMS, "fresh", *(p + str(i) for i in range(6) for p in ("", "0", "00"))})
ALL_NAMES = [*NAMES, "n2"]
ABSENT = None

EXAMPLES = settings(max_examples=500, deadline=None)

# --- strategies ------------------------------------------------------------------------------

pairs = st.one_of(st.tuples(st.sampled_from(["zone", HOST]), st.sampled_from(VALUES)),
                  st.tuples(st.just(NUM), st.sampled_from(NUMS)))
selectors = st.lists(pairs, max_size=2).map(dict)
label_exprs = st.one_of(
    st.builds(lambda k, o, v: {"key": k, "operator": o, "values": v}, st.sampled_from(["zone", HOST]),
              st.sampled_from(["In", "NotIn"]), st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
    st.builds(lambda o, v: {"key": NUM, "operator": o, "values": v}, st.sampled_from(["In", "NotIn"]),
              st.lists(st.sampled_from(NUMS), min_size=1, max_size=2)),
    st.builds(lambda k, o: {"key": k, "operator": o}, st.sampled_from(KEYS),
              st.sampled_from(["Exists", "DoesNotExist"])),
    st.builds(lambda o, v: {"key": NUM, "operator": o, "values": [v]}, st.sampled_from(["Gt", "Lt"]),
              st.sampled_from(INTS)),
)
field_exprs = st.builds(lambda o, v: {"key": "metadata.name", "operator": o, "values": [v]},
                        st.sampled_from(["In", "NotIn"]), st.sampled_from(NAMES))
terms = st.builds(lambda e, f: {"matchExpressions": e, **({"matchFields": f} if f else {})},
                  st.lists(label_exprs, max_size=4), st.lists(field_exprs, max_size=2))
term_lists = st.lists(terms, max_size=2)
tolerations = st.lists(st.fixed_dictionaries({"key": st.sampled_from(["k1", "k2"]),
                                              "operator": st.sampled_from(["Exists", "Equal"]),
                                              "value": st.sampled_from(["", "v"])}), max_size=2)
node_labels = st.fixed_dictionaries({}, optional={k: st.sampled_from(UNIVERSE) for k in KEYS})
nodes = st.tuples(node_labels, st.sampled_from(ALL_NAMES))


# --- the oracle: Kubernetes rules, written out again ------------------------------------------

def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


def ref_expr(e: dict[str, Any], value: str | None) -> bool:
    """One matchExpression against a label value (None: the label is absent)."""
    op, values = e["operator"], e.get("values", [])
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    have = _int(value) if value is not None else None
    return have is not None and (have > int(values[0]) if op == "Gt" else have < int(values[0]))


def ref_field(e: dict[str, Any], name: str) -> bool:
    return bool((name == e["values"][0]) == (e["operator"] == "In"))


def ref_term(t: dict[str, Any], labels: dict[str, str], name: str) -> bool:
    exprs, fields = t.get("matchExpressions", []), t.get("matchFields", [])
    if not exprs and not fields:
        return False  # an empty term matches nothing
    return all(ref_expr(e, labels.get(e["key"])) for e in exprs) and all(ref_field(f, name) for f in fields)


def effective_default(vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str],
                      default: dict[str, str]) -> dict[str, str]:
    mentioned = {*vm_sel, *mig_sel, *(e["key"] for t in vm_terms for e in t.get("matchExpressions", []))}
    return {k: v for k, v in default.items() if k not in mentioned}


def ref_ok(labels: dict[str, str], name: str, vm_sel: dict[str, str], vm_terms: list[dict[str, Any]],
           mig_sel: dict[str, str], default: dict[str, str]) -> bool:
    """Does this node satisfy the VM, the Migration and the default, and is it not the source?"""
    sel = {**effective_default(vm_sel, vm_terms, mig_sel, default)}
    for s in (vm_sel, mig_sel):
        if any(labels.get(k) != v for k, v in s.items()):
            return False
    if any(labels.get(k) != v for k, v in sel.items()):
        return False
    if vm_terms and not any(ref_term(t, labels, name) for t in vm_terms):
        return False
    return name != SOURCE and labels.get(HOST) != SOURCE


def ref_satisfiable(vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str],
                    default: dict[str, str]) -> bool:
    """Is there any node at all? Labels are independent, so search one key (and the name) at a time."""
    def key_ok(key: str, value: str | None, term: dict[str, Any] | None) -> bool:
        labels = {key: value} if value is not None else {}
        fake_sel_ok = all(labels.get(key) == v for s in (vm_sel, mig_sel, default_eff) for k, v in s.items()
                          if k == key)
        exprs_ok = term is None or all(ref_expr(e, value) for e in term.get("matchExpressions", []) if e["key"] == key)
        return fake_sel_ok and exprs_ok and not (key == HOST and value == SOURCE)

    default_eff = effective_default(vm_sel, vm_terms, mig_sel, default)
    candidates: list[dict[str, Any] | None] = list(vm_terms) if vm_terms else [None]
    for term in candidates:
        if term is not None and not term.get("matchExpressions") and not term.get("matchFields"):
            continue
        labels_ok = all(any(key_ok(k, v, term) for v in [ABSENT, *UNIVERSE]) for k in KEYS)
        name_ok = any(n != SOURCE and (term is None or all(ref_field(f, n) for f in term.get("matchFields", [])))
                      for n in ALL_NAMES)
        if labels_ok and name_ok:
            return True
    return False


def merge(vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str],
          default: dict[str, str], tol: list[dict[str, Any]] | None = None) -> Merged | Contradiction:
    return merge_constraints(vm_sel, vm_terms, vm_tolerations=tol, migration_node_selector=mig_sel,
                             source_node=SOURCE, default_selector=default)


# --- properties --------------------------------------------------------------------------------

@EXAMPLES
@given(selectors, term_lists, selectors, selectors, st.lists(nodes, min_size=1, max_size=12))
def test_a_merged_matches_iff_both_sides_match_and_not_source(
        vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str],
        default: dict[str, str], sample: list[tuple[dict[str, str], str]]) -> None:
    merged = merge(vm_sel, vm_terms, mig_sel, default)
    if isinstance(merged, Contradiction):
        return
    for labels, name in sample:
        assert node_matches(labels, merged, node_name=name) == ref_ok(
            labels, name, vm_sel, vm_terms, mig_sel, default), (labels, name, merged)


@EXAMPLES
@given(selectors, term_lists, selectors, selectors)
def test_b_contradiction_iff_unsatisfiable(vm_sel: dict[str, str], vm_terms: list[dict[str, Any]],
                                           mig_sel: dict[str, str], default: dict[str, str]) -> None:
    merged = merge(vm_sel, vm_terms, mig_sel, default)
    assert isinstance(merged, Contradiction) == (not ref_satisfiable(vm_sel, vm_terms, mig_sel, default)), merged
    if isinstance(merged, Contradiction):
        assert merged.conflicts and all(c.key in merged.message for c in merged.conflicts)


@EXAMPLES
@given(selectors, term_lists, selectors, selectors, tolerations)
def test_c_inputs_never_mutated(vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str],
                                default: dict[str, str], tol: list[dict[str, Any]]) -> None:
    before = copy.deepcopy((vm_sel, vm_terms, mig_sel, default, tol))
    merged = merge(vm_sel, vm_terms, mig_sel, default, tol)
    assert (vm_sel, vm_terms, mig_sel, default, tol) == before
    if isinstance(merged, Merged):
        node = {"metadata": {"name": "n1", "labels": {}}, "status": {"allocatable": {"memory": "1Gi", "pods": "9"}}}
        explain_infeasible([node], [], merged=merged, memory_request_bytes=1)
        merged.node_selector["zone"] = "mutated"
        for t in merged.required_terms:
            t.setdefault("matchExpressions", []).append({"key": "x", "operator": "Exists"})
            for e in t["matchExpressions"]:
                e.setdefault("values", []).append("mutated")
        for t in merged.tolerations:
            t["key"] = "mutated"
        fields = merged.pod_spec_fields()
        fields["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].clear()
        assert (vm_sel, vm_terms, mig_sel, default, tol) == before


@EXAMPLES
@given(selectors, term_lists, selectors, selectors, tolerations, node_labels, st.booleans())
def test_d_source_never_feasible(vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str],
                                 default: dict[str, str], tol: list[dict[str, Any]], labels: dict[str, str],
                                 by_label: bool) -> None:
    merged = merge(vm_sel, vm_terms, mig_sel, default, tol)
    if isinstance(merged, Contradiction):
        return
    # The source is the node called n0, or a node whose hostname label says n0.
    name, labels = ("renamed", {**labels, HOST: SOURCE}) if by_label else (SOURCE, labels)
    assert not node_matches(labels, merged, node_name=name)
    node = {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"memory": "64Gi", "cpu": "64", "pods": "110"}}}
    verdict = explain_infeasible([node], [], merged=merged, memory_request_bytes=1).nodes[0]
    assert not verdict.feasible
    assert verdict.reasons[0].summary == "is the source"


@EXAMPLES
@given(selectors, term_lists, selectors, selectors, st.lists(nodes, min_size=1, max_size=8))
def test_untainted_roomy_nodes_are_feasible_iff_they_match(
        vm_sel: dict[str, str], vm_terms: list[dict[str, Any]], mig_sel: dict[str, str], default: dict[str, str],
        sample: list[tuple[dict[str, str], str]]) -> None:
    merged = merge(vm_sel, vm_terms, mig_sel, default)
    if isinstance(merged, Contradiction):
        return
    objs: list[dict[str, Any]] = [
            {"metadata": {"name": f"{name}-{i}" if name != SOURCE else name, "labels": labels},
             "status": {"allocatable": {"memory": "64Gi", "cpu": "64", "pods": "110"}}}
            for i, (labels, name) in enumerate(sample)]
    got = explain_infeasible(objs, [], merged=merged, memory_request_bytes=2**30)
    want = sorted(o["metadata"]["name"] for o in objs
                  if node_matches(o["metadata"]["labels"], merged, node_name=o["metadata"]["name"]))
    assert sorted(got.feasible_nodes) == want


numeric_exprs = st.one_of(
    st.builds(lambda v: {"key": NUM, "operator": "Gt", "values": [v]}, st.sampled_from(["0", "1"])),
    st.builds(lambda v: {"key": NUM, "operator": "Lt", "values": [v]}, st.sampled_from(["2", "3"])),
    st.builds(lambda o, v: {"key": NUM, "operator": o, "values": v}, st.sampled_from(["In", "NotIn"]),
              st.lists(st.sampled_from(NUMS), min_size=1, max_size=3)),
    st.builds(lambda o: {"key": NUM, "operator": o}, st.sampled_from(["Exists", "DoesNotExist"])),
)


@EXAMPLES
@given(st.lists(st.lists(numeric_exprs, min_size=1, max_size=4), min_size=1, max_size=2),
       st.lists(st.tuples(st.just(NUM), st.sampled_from(NUMS)), max_size=1).map(dict))
def test_b_contradiction_iff_unsatisfiable_on_one_integer_key(exprs: list[list[dict[str, Any]]],
                                                              mig_sel: dict[str, str]) -> None:
    """(b) again, concentrated where it is hardest: Gt/Lt windows, integer spellings, NotIn lists."""
    vm_terms = [{"matchExpressions": e} for e in exprs]
    merged = merge({}, vm_terms, mig_sel, {})
    assert isinstance(merged, Contradiction) == (not ref_satisfiable({}, vm_terms, mig_sel, {})), merged
