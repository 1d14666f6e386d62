"""Capacity: at most N running in the cluster and M leaving one node; the rest wait, oldest first."""

from __future__ import annotations

import pytest

from virtmigrate.controller.migration.capacity import Candidate, Limits, decide_admission, decide_admissions


def c(key: str, created: str, node: str, active: bool = False) -> Candidate:
    return Candidate(key=key, created=created, source_node=node, active=active)


def admitted(cands: list[Candidate], limits: Limits | None = None) -> list[str]:
    return sorted(k for k, a in decide_admissions(cands, limits or Limits()).items() if a.admit)


def test_eight_pending_on_four_nodes_admit_five_oldest_within_two_per_node() -> None:
    cands = [c(f"ns/m{i}", f"2026-01-01T00:00:0{i}Z", f"node{i % 4}") for i in range(8)]
    assert admitted(cands) == ["ns/m0", "ns/m1", "ns/m2", "ns/m3", "ns/m4"]


def test_per_node_limit_does_not_block_younger_on_other_nodes() -> None:
    cands = [c("ns/a", "2026-01-01T00:00:00Z", "node0", active=True),
             c("ns/b", "2026-01-01T00:00:01Z", "node0", active=True),
             c("ns/c", "2026-01-01T00:00:02Z", "node0"),
             c("ns/d", "2026-01-01T00:00:03Z", "node1")]
    out = decide_admissions(cands, Limits())
    assert not out["ns/c"].admit
    assert "leaving node node0 (limit 2 per node)" in out["ns/c"].message
    assert out["ns/d"].admit


def test_cluster_limit_holds_everyone_and_says_so() -> None:
    cands = [c(f"ns/r{i}", "2026-01-01T00:00:00Z", f"node{i}", active=True) for i in range(5)]
    cands.append(c("ns/p", "2026-01-01T00:00:09Z", "node9"))
    a = decide_admission("ns/p", cands, Limits())
    assert not a.admit
    assert "5 migrations are running in the cluster (limit 5)" in a.message


def test_oldest_first_not_key_order() -> None:
    cands = [c("ns/z-old", "2026-01-01T00:00:00Z", "node0"), c("ns/a-new", "2026-01-01T00:00:05Z", "node1")]
    assert admitted(cands, Limits(max_running=1)) == ["ns/z-old"]


@pytest.mark.parametrize(("limits", "expected"), [
    pytest.param(Limits(max_running=1, max_per_node=1), 1, id="one"),
    pytest.param(Limits(max_running=100, max_per_node=1), 3, id="per-node-bound"),
    pytest.param(Limits(max_running=100, max_per_node=100), 6, id="unbounded"),
])
def test_limits_configurable(limits: Limits, expected: int) -> None:
    cands = [c(f"ns/m{i}", f"2026-01-01T00:00:0{i}Z", f"node{i % 3}") for i in range(6)]
    assert len(admitted(cands, limits)) == expected


def test_active_candidates_get_no_decision_and_unknown_key_is_admitted() -> None:
    cands = [c("ns/a", "t", "node0", active=True)]
    assert decide_admissions(cands, Limits()) == {}
    assert decide_admission("ns/other", cands, Limits()).admit
