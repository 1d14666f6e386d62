"""What a campaign found: one `RoundResult` per round and the `Summary` printed at the end (and as JSON)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.chaos.invariants import Violation
from tests.chaos.plan import Fault, RoundPlan


def switchover_moment(source_state: str, target_state: str) -> str:
    """The migration's stage from the guest's domain states on its source and target ("" = no domain) (pure):
    before the target has an incoming domain, while it has one paused, after it runs there."""
    if target_state == "running":
        return "after-switch-over"
    if target_state:
        return "during-copy"
    return "before-copy" if source_state == "running" else f"source {source_state or 'gone'}, no target"


@dataclass
class RoundResult:
    plan: RoundPlan
    injected: str = "not yet"          # what the fault thread did, with pids
    effective: bool = False            # the harm happened (e.g. the agent still ran when killed)
    trigger_at: float | None = None    # seconds from the round's start
    fault_at: float | None = None
    moment: str = ""                   # the victim's migration stage as the harm began (switchover_moment)
    recovery_s: float | None = None    # from the fault (or the round's start) to all invariants holding
    duration_s: float = 0.0
    waited_on: list[str] = field(default_factory=list)  # the invariants that failed last before the recovery
    outcomes: dict[str, str] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    evidence: str = ""                 # where the logs and objects of a violating round were copied

    def timing(self) -> str:
        t = f"trigger {self.plan.trigger} at +{self.trigger_at:.2f}s" if self.trigger_at is not None \
            else f"trigger {self.plan.trigger} never seen"
        if self.fault_at is not None:
            t += f", fault at +{self.fault_at:.2f}s ({self.moment})"
        return t


@dataclass
class Summary:
    seed: int
    results: list[RoundResult]
    repairs: int
    elapsed_s: float
    recovery_bound_s: float
    records_cleared: int = 0  # libvirt records of never-started copies the product reported, cleared by the harness

    @property
    def violations(self) -> list[tuple[RoundResult, Violation]]:
        return [(r, v) for r in self.results for v in r.violations]

    def to_json(self) -> dict[str, Any]:
        def one(r: RoundResult) -> dict[str, Any]:
            d = asdict(r)
            d["plan"] = {**asdict(r.plan), "skip": sorted(r.plan.skip)}
            d["violations"] = [str(v) for v in r.violations]
            return d
        return {"seed": self.seed, "rounds": [one(r) for r in self.results], "repairs": self.repairs,
                "elapsed_s": self.elapsed_s, "text": self.text()}

    def text(self) -> str:
        rs = self.results
        if not rs:
            return "chaos: no rounds ran"
        faults_ = Counter(r.plan.label for r in rs if r.effective)
        missed = Counter(r.plan.label for r in rs if not r.effective)
        kinds: dict[str, list[int]] = {}
        for r, v in self.violations:
            rounds = kinds.setdefault(str(v.kind), [])
            if r.plan.round not in rounds:
                rounds.append(r.plan.round)
        recovered = [r for r in rs if r.recovery_s is not None]
        slow = max(recovered, key=lambda r: r.recovery_s or 0.0, default=None)
        durations = [r.duration_s for r in rs]
        lines = [f"chaos summary: seed {self.seed}, {len(rs)} rounds ({rs[0].plan.round}..{rs[-1].plan.round}), "
                 f"{self.elapsed_s / 60:.1f} min",
                 "  faults missed (nothing to aim at): " + (", ".join(f"{k} {n}" for k, n in sorted(missed.items()))
                                                            or "none"),
                 f"  {'fault injected':<36}{'rounds':>7}{'violated':>10}   by stage of the victim's migration "
                 "(violated/rounds)"]
        for kind in sorted(faults_):
            hit = [r for r in rs if r.effective and r.plan.label == kind]
            stages = sorted({r.moment for r in hit})
            per_stage = ", ".join(f"{st} {sum(1 for r in hit if r.moment == st and r.violations)}/"
                                  f"{sum(1 for r in hit if r.moment == st)}" for st in stages)
            lines.append(f"  {kind:<36}{len(hit):>7}{sum(1 for r in hit if r.violations):>10}   {per_stage}")
        lines += [
                 f"  cancels racing a fault: {sum(1 for r in rs if r.plan.cancel and r.plan.fault != Fault.CANCEL)}",
                 f"  rounds with violations: {len({r.plan.round for r, _ in self.violations})} of {len(rs)}"]
        by_round = {r.plan.round: r for r in rs}
        for k, rounds in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            per_fault = Counter(by_round[n].plan.label for n in rounds)
            lines.append(f"    {k}: {len(rounds)} rounds ({', '.join(f'{f} {c}' for f, c in per_fault.most_common())})"
                         f", e.g. make chaos SEED={self.seed} ROUND={rounds[0]}"
                         f" (rounds {', '.join(map(str, rounds[:12]))}{' ...' if len(rounds) > 12 else ''})")
        if slow is not None:
            lines.append(f"  slowest recovery: {slow.recovery_s:.1f}s (round {slow.plan.round}: {slow.plan.describe()}"
                         f"; last waited on {', '.join(slow.waited_on) or '-'})")
        lines.append(f"  not recovered within {self.recovery_bound_s:.0f}s: {len(rs) - len(recovered)} rounds; "
                     f"repairs by the harness: {self.repairs}")
        lines.append(f"  libvirt records of never-started copies (reported by LeftoverRefused, cleared by the "
                     f"harness as a node's admin would): {self.records_cleared}")
        lines.append(f"  round duration: mean {sum(durations) / len(durations):.1f}s, max {max(durations):.1f}s")
        return "\n".join(lines)
