"""Verdicts per problem type and guardrail, and the overall decision on a canary.

Why: the loop must roll back a version that made any problem or guardrail worse, hold
when the experiment itself is broken, and propose a problem type as solved only on
strong, repeated evidence. All bounds are always-valid, so this may run at every look.

Per problem type (rates where higher is worse), in order:

- regressed: the one-sided always-valid lower bound on new − prev is above 0, with at
  least ``min_events_for_regression`` conversations per arm. Its level is α split over
  all metrics (Bonferroni, ``familywise_regression``): one A/A canary is rolled back
  with probability ≤ α in all, not α per metric;
- insufficient_data: fewer than ``min_events_per_arm`` conversations in an arm;
- solved_candidate: the one-sided bound on new/prev − 1 is below −δ, the type is
  selected by e-BH at level α across all problem types (e-values against
  H0: new ≥ (1 − δ)·prev), the experiment is healthy, AND all this already held on the
  previous look (``previously_met``);
- non_inferior: the bound on new/prev − 1 is below ``target_margin``;
- inconclusive: otherwise. Never "solved" without the above.

Guardrails have a direction; "worse" is up for e.g. Risk/Reject or abnormal handoff rates
and down for CTA/conversion rates. regressed: the bound on the difference lies beyond 0 on
the worse side; non_inferior: the relative change is bounded within the margin on the worse
side (non-inferiority via the always-valid bound); otherwise as above, never solved.

Decision: roll_back if anything regressed, else hold if the experiment is unhealthy (SRM
or multiple exposure), else proceed (healthy and nothing regressed; whether to step the
rollout up may further ask ``all_guardrails_non_inferior``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from analytics.stats.config import ComparisonSettings
from analytics.stats.contrast import (
    Alternative,
    contrast_e_value,
    difference_interval,
    relative_change_interval,
)
from analytics.stats.health import HealthCheck
from analytics.stats.multiplicity import e_benjamini_hochberg
from analytics.stats.rates import RateEstimate
from analytics.stats.sequential import Interval, Side


class Direction(StrEnum):
    """Which way a rate gets worse."""

    HIGHER_IS_WORSE = "higher_is_worse"
    LOWER_IS_WORSE = "lower_is_worse"


class Verdict(StrEnum):
    REGRESSED = "regressed"
    SOLVED_CANDIDATE = "solved_candidate"
    NON_INFERIOR = "non_inferior"
    INCONCLUSIVE = "inconclusive"
    INSUFFICIENT_DATA = "insufficient_data"


class Decision(StrEnum):
    ROLL_BACK = "roll_back"
    HOLD = "hold"
    PROCEED = "proceed"


@dataclass(frozen=True, slots=True)
class ArmRates:
    """One metric's rate in the previous (control) and the new (canary) version."""

    prev: RateEstimate
    new: RateEstimate
    direction: Direction = Direction.HIGHER_IS_WORSE


@dataclass(frozen=True, slots=True)
class MetricResult:
    """Everything a dashboard or a promotion proposal needs about one metric at one look.

    ``regression_bound`` is the one-sided bound on the difference toward "better" (a lower
    bound when higher is worse), at the regression level: beyond 0 on the worse side
    means regressed.
    ``e_value`` is the evidence for the improvement being tested: solved (targets) or
    non-inferiority (guardrails). Intervals are two-sided always-valid (1 − α).
    """

    name: str
    direction: Direction
    prev: RateEstimate
    new: RateEstimate
    difference: float
    difference_interval: Interval
    regression_bound: float
    relative_change: float | None
    relative_change_interval: Interval
    e_value: float
    solved_criteria_met: bool
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of one look: per-metric results, health and the decision."""

    decision: Decision
    reason: str
    health: HealthCheck
    targets: Mapping[str, MetricResult]
    guardrails: Mapping[str, MetricResult]

    @property
    def solved_criteria_met(self) -> frozenset[str]:
        """Types meeting the solved criteria now: pass as ``previously_met`` next look."""
        return frozenset(n for n, r in self.targets.items() if r.solved_criteria_met)

    @property
    def all_guardrails_non_inferior(self) -> bool:
        return all(r.verdict is Verdict.NON_INFERIOR for r in self.guardrails.values())


def _regression_bound(pair: ArmRates, alpha: float, cfg: ComparisonSettings) -> float:
    higher = pair.direction is Direction.HIGHER_IS_WORSE
    bound = difference_interval(
        pair.prev,
        pair.new,
        alpha=alpha,
        target_n=cfg.cs_target_n,
        side=Side.LOWER if higher else Side.UPPER,
    )
    return bound.lower if higher else bound.upper


def _non_inferiority_e(pair: ArmRates, margin: float, cfg: ComparisonSettings) -> float:
    higher = pair.direction is Direction.HIGHER_IS_WORSE
    return contrast_e_value(
        pair.prev,
        pair.new,
        ratio=1 + margin if higher else 1 - margin,
        alternative=Alternative.LESS if higher else Alternative.GREATER,
        alpha=cfg.alpha,
        target_n=cfg.cs_target_n,
    )


def _solved_e(pair: ArmRates, cfg: ComparisonSettings) -> float:
    return contrast_e_value(
        pair.prev,
        pair.new,
        ratio=1 - cfg.delta,
        alternative=Alternative.LESS,
        alpha=cfg.alpha,
        target_n=cfg.cs_target_n,
    )


def _min_events(pair: ArmRates) -> float:
    return min(pair.prev.events, pair.new.events)


def _is_worse(bound: float, direction: Direction) -> bool:
    return bound > 0 if direction is Direction.HIGHER_IS_WORSE else bound < 0


def _base_verdict(
    pair: ArmRates, bound: float, cfg: ComparisonSettings
) -> tuple[Verdict, str] | None:
    """Regressed or insufficient_data; None when neither applies and the data decides."""
    events = _min_events(pair)
    if _is_worse(bound, pair.direction) and events >= cfg.min_events_for_regression:
        return Verdict.REGRESSED, f"difference bound {bound:+.4g} is on the worse side of 0"
    if events < cfg.min_events_per_arm:
        return Verdict.INSUFFICIENT_DATA, (
            f"{events:g} conversations in the smaller arm < {cfg.min_events_per_arm}"
        )
    return None


def _fallback(ni_e: float, margin: float, cfg: ComparisonSettings) -> tuple[Verdict, str]:
    if ni_e >= 1 / cfg.alpha:
        return Verdict.NON_INFERIOR, f"relative change bounded within the {margin:.0%} margin"
    return Verdict.INCONCLUSIVE, "no bound excludes the margins yet"


def _result(
    name: str,
    pair: ArmRates,
    cfg: ComparisonSettings,
    *,
    bound: float,
    e: float,
    met: bool,
    verdict: tuple[Verdict, str],
) -> MetricResult:
    prev, new = pair.prev, pair.new
    alpha, target_n = cfg.alpha, cfg.cs_target_n
    relative = new.rate / prev.rate - 1 if prev.rate > 0 else None
    return MetricResult(
        name=name,
        direction=pair.direction,
        prev=prev,
        new=new,
        difference=new.rate - prev.rate,
        difference_interval=difference_interval(prev, new, alpha=alpha, target_n=target_n),
        regression_bound=bound,
        relative_change=relative,
        relative_change_interval=relative_change_interval(
            prev, new, alpha=alpha, target_n=target_n
        ),
        e_value=e,
        solved_criteria_met=met,
        verdict=verdict[0],
        reason=verdict[1],
    )


def _target_results(
    targets: Mapping[str, ArmRates],
    health: HealthCheck,
    previously_met: Collection[str],
    regression_alpha: float,
    cfg: ComparisonSettings,
) -> dict[str, MetricResult]:
    gated = {n: _min_events(p) < cfg.min_events_per_arm for n, p in targets.items()}
    # e-BH over every type; a gated type enters with e = 0 (a valid, powerless e-value).
    solved_e = {n: 0.0 if gated[n] else _solved_e(p, cfg) for n, p in targets.items()}
    flags = e_benjamini_hochberg(list(solved_e.values()), alpha=cfg.alpha)
    selected = dict(zip(targets, flags, strict=True))
    results = {}
    for name, pair in targets.items():
        bound = _regression_bound(pair, regression_alpha, cfg)
        ni_e = _non_inferiority_e(pair, cfg.target_margin, cfg)
        verdict = _base_verdict(pair, bound, cfg)
        shown = verdict is None and selected[name] and solved_e[name] >= 1 / cfg.alpha
        met = shown and health.healthy
        if verdict is None:
            verdict = _solved_verdict(name, met, shown, previously_met, ni_e, cfg)
        results[name] = _result(
            name, pair, cfg, bound=bound, e=solved_e[name], met=met, verdict=verdict
        )
    return results


def _solved_verdict(
    name: str,
    met: bool,
    shown: bool,
    previously_met: Collection[str],
    ni_e: float,
    cfg: ComparisonSettings,
) -> tuple[Verdict, str]:
    drop = f"rate shown down by more than {cfg.delta:.0%}, selected by e-BH"
    if met and name in previously_met:
        return Verdict.SOLVED_CANDIDATE, f"{drop}, on this and the previous look"
    verdict, reason = _fallback(ni_e, cfg.target_margin, cfg)
    if met:
        return verdict, f"{drop} on this look only; solved needs the next look too"
    if shown:
        return verdict, f"{drop}, but the experiment is unhealthy"
    return verdict, reason


def _guardrail_results(
    guardrails: Mapping[str, ArmRates], regression_alpha: float, cfg: ComparisonSettings
) -> dict[str, MetricResult]:
    results = {}
    for name, pair in guardrails.items():
        margin = cfg.margin_for(name)
        bound = _regression_bound(pair, regression_alpha, cfg)
        ni_e = _non_inferiority_e(pair, margin, cfg)
        verdict = _base_verdict(pair, bound, cfg) or _fallback(ni_e, margin, cfg)
        results[name] = _result(name, pair, cfg, bound=bound, e=ni_e, met=False, verdict=verdict)
    return results


def compare_versions(
    targets: Mapping[str, ArmRates],
    guardrails: Mapping[str, ArmRates],
    health: HealthCheck,
    *,
    previously_met: Collection[str] = frozenset(),
    settings: ComparisonSettings | None = None,
) -> Comparison:
    """One look at a canary: verdict per problem type and guardrail, and the decision.

    ``previously_met`` is ``Comparison.solved_criteria_met`` of the previous look (persist
    it between looks); empty on the first look, so no type is solved on its first look.
    """
    cfg = settings or ComparisonSettings()
    regression_alpha = cfg.regression_alpha(len(targets) + len(guardrails))
    target_results = _target_results(targets, health, previously_met, regression_alpha, cfg)
    guardrail_results = _guardrail_results(guardrails, regression_alpha, cfg)
    regressed = [
        name
        for name, result in {**target_results, **guardrail_results}.items()
        if result.verdict is Verdict.REGRESSED
    ]
    if regressed:
        decision, reason = Decision.ROLL_BACK, f"regressed: {', '.join(sorted(regressed))}"
    elif not health.healthy:
        decision, reason = Decision.HOLD, "; ".join(health.reasons)
    else:
        decision, reason = Decision.PROCEED, "healthy and nothing regressed"
    return Comparison(decision, reason, health, target_results, guardrail_results)
