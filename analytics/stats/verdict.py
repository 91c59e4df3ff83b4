"""Verdicts per problem type and guardrail, and the overall decision on a canary.

Why: the loop must roll back a version that made any problem or guardrail worse, hold
when the experiment itself is broken, and propose a problem type as solved only on
strong, repeated evidence, at every split a rollout uses (a 1 % canary as much as 50/50).
All bounds are always-valid, so this may run at every look.

Gates, in order, for every metric (higher is worse unless the direction says otherwise):

- insufficient_labels: a label- or QA-derived metric whose sampled conversations are
  less than ``min_label_coverage`` labelled in either arm (unlabelled samples count 0);
- regressed: the one-sided always-valid bound on new − prev lies beyond 0 on the worse
  side at level α/M (Bonferroni over all M metrics), AND, for event counts, the exact
  count test (``counts``) agrees at the same level, with at least
  ``min_events_for_regression`` conversations and ``min_expected_events`` expected events
  in the smaller arm;
- insufficient_data: fewer than ``min_events_per_arm`` conversations, or fewer than
  ``min_expected_events`` events expected at the pooled rate, in the smaller arm: the
  evidence is sized by the smaller arm, not by both together;
- solved_candidate (problem types only): the one-sided bound on new/prev − 1 is below −δ
  at level α/K (Bonferroni over the K problem types), the exact count test agrees, the
  experiment is healthy, AND the criteria already held at an earlier look of the same
  unbroken streak with at least ``solved_min_new_data`` less data (``previously_met``);
- non_inferior: the bound on the relative change is within the margin on the worse side;
- inconclusive: otherwise. Never "solved" without the above.

Guarantees, over the whole sequence of looks of one rollout (Ville's inequality makes
each always-valid e-process cross 1/level with probability ≤ level at any look, ever):
the chance that any metric is ever falsely called regressed is ≤ α, and the chance that
any problem type whose rate did not fall by more than δ is ever called solved is ≤ α
(family-wise, across types and looks; the two-look rule only makes it stricter). This
replaced e-BH, whose false-discovery guarantee holds at one look, not for the union of
declarations made at every look.

Intervals shown are the decision's own: the difference interval has as ends the two
one-sided bounds at the regression level α/M; the relative-change interval the two
one-sided bounds at the solved level α/K (problem types) or α (guardrails). So "the
interval excludes 0" and "regressed" can only disagree when the exact count test or a
gate withholds the verdict, and the reason then says which.

Decision: roll_back if anything regressed, else hold if the experiment is unhealthy (SRM
or multiple exposure), else proceed (healthy and nothing regressed; whether to step the
rollout up may further ask ``all_guardrails_non_inferior``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from analytics.stats.config import ComparisonSettings
from analytics.stats.contrast import (
    Alternative,
    contrast_e_value,
    difference_interval,
    relative_change_interval,
    units,
)
from analytics.stats.counts import CountSide, prior_strength, stratified_count_e_value
from analytics.stats.health import HealthCheck
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
    INSUFFICIENT_LABELS = "insufficient_labels"


class Decision(StrEnum):
    ROLL_BACK = "roll_back"
    HOLD = "hold"
    PROCEED = "proceed"


@dataclass(frozen=True, slots=True)
class StratumCounts:
    """One rollout step's conversations and (unweighted) events per arm."""

    prev_conversations: float
    prev_events: float
    new_conversations: float
    new_events: float


@dataclass(frozen=True, slots=True)
class LabelCoverage:
    """Share of each arm's sampled conversations that carry a label (1.0 if none sampled)."""

    prev: float
    new: float

    @property
    def lowest(self) -> float:
        return min(self.prev, self.new)


@dataclass(frozen=True, slots=True)
class ArmRates:
    """One metric's rate in the previous (control) and the new (canary) version.

    ``exact_counts``: y is a 0/1 count per conversation, so the exact count test applies
    (per step in ``strata``, or on the totals when ``strata`` is empty). ``coverage``: set
    for metrics derived from labels or QA reviews.
    """

    prev: RateEstimate
    new: RateEstimate
    direction: Direction = Direction.HIGHER_IS_WORSE
    exact_counts: bool = False
    strata: tuple[StratumCounts, ...] = ()
    coverage: LabelCoverage | None = None


@dataclass(frozen=True, slots=True)
class MetricResult:
    """Everything a dashboard or a promotion proposal needs about one metric at one look.

    ``regression_bound`` is the one-sided bound on the difference toward "better" (a lower
    bound when higher is worse), at the regression level: beyond 0 on the worse side
    means regressed. ``difference_interval`` and ``relative_change_interval`` are the
    decision's own bounds (module docstring), each end one-sided at ``difference_level``
    and ``relative_level``. ``e_value`` is the evidence for the improvement tested (solved
    for targets, non-inferiority for guardrails): the smaller of the normal-mixture and
    the exact count e-values. ``expected_events`` is the smaller arm's expected number of
    events at the pooled rate.
    """

    name: str
    direction: Direction
    prev: RateEstimate
    new: RateEstimate
    difference: float
    difference_interval: Interval
    difference_level: float
    regression_bound: float
    relative_change: float | None
    relative_change_interval: Interval
    relative_level: float
    e_value: float
    count_e_value: float | None
    expected_events: float
    coverage: LabelCoverage | None
    solved_criteria_met: bool
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of one look: per-metric results, health and the decision.

    ``solved_since`` maps each type that meets the solved criteria now to the effective
    users at the first look of its unbroken streak: pass it as ``previously_met`` next
    look (the two-look rule with minimum spacing).
    """

    decision: Decision
    reason: str
    health: HealthCheck
    targets: Mapping[str, MetricResult]
    guardrails: Mapping[str, MetricResult]
    solved_since: Mapping[str, float]

    @property
    def solved_criteria_met(self) -> frozenset[str]:
        """Types meeting the solved criteria now."""
        return frozenset(self.solved_since)

    @property
    def all_guardrails_non_inferior(self) -> bool:
        return all(r.verdict is Verdict.NON_INFERIOR for r in self.guardrails.values())


def expected_events(pair: ArmRates) -> float:
    """Events the smaller arm should hold at the pooled rate (effective events)."""
    prev, new = pair.prev, pair.new
    served = prev.events + new.events
    if served <= 0:
        return 0.0
    pooled = prev.event_count + new.event_count
    return pooled * min(prev.events, new.events) / served


def _strata(pair: ArmRates) -> list[tuple[float, float, float, float]]:
    if pair.strata:
        return [
            (s.prev_conversations, s.prev_events, s.new_conversations, s.new_events)
            for s in pair.strata
        ]
    return [(pair.prev.events, pair.prev.positives, pair.new.events, pair.new.positives)]


@dataclass(frozen=True, slots=True)
class _Tester:
    """The two e-values (normal mixture and exact counts) of one metric's tests."""

    pair: ArmRates
    cfg: ComparisonSettings

    def e(self, *, ratio: float, toward_lower: bool, alpha: float) -> tuple[float, float | None]:
        """min(normal, count) and the count e-value for H1: new < ratio·prev (or >)."""
        alternative = Alternative.LESS if toward_lower else Alternative.GREATER
        normal = contrast_e_value(
            self.pair.prev,
            self.pair.new,
            ratio=ratio,
            alternative=alternative,
            alpha=alpha,
            target_n=self.cfg.cs_target_n,
        )
        if not self.pair.exact_counts:
            return normal, None
        count = stratified_count_e_value(
            _strata(self.pair),
            ratio=ratio,
            side=CountSide.LESS if toward_lower else CountSide.GREATER,
            strength=prior_strength(alpha=alpha, target_events=self.cfg.count_target_events),
        )
        return min(normal, count), count


def _higher(pair: ArmRates) -> bool:
    return pair.direction is Direction.HIGHER_IS_WORSE


def _two_one_sided(pair: ArmRates, alpha: float, cfg: ComparisonSettings) -> Interval:
    """Both one-sided bounds on new − prev, within [−1, 1] where a difference of rates lies.

    Cutting a bound to the parameter's range keeps its coverage (a normal bound on
    Horvitz–Thompson rates can otherwise pass −1).
    """
    low = difference_interval(
        pair.prev, pair.new, alpha=alpha, target_n=cfg.cs_target_n, side=Side.LOWER
    )
    high = difference_interval(
        pair.prev, pair.new, alpha=alpha, target_n=cfg.cs_target_n, side=Side.UPPER
    )
    return Interval(max(-1.0, low.lower), min(1.0, high.upper))


def _relative_two_one_sided(pair: ArmRates, alpha: float, cfg: ComparisonSettings) -> Interval:
    kwargs = {"alpha": alpha, "target_n": cfg.cs_target_n}
    low = relative_change_interval(pair.prev, pair.new, side=Side.LOWER, **kwargs)
    high = relative_change_interval(pair.prev, pair.new, side=Side.UPPER, **kwargs)
    return Interval(low.lower, high.upper)


@dataclass(frozen=True, slots=True)
class _Levels:
    regression: float
    relative: float


def _coverage_gate(pair: ArmRates, cfg: ComparisonSettings) -> tuple[Verdict, str] | None:
    coverage = pair.coverage
    if coverage is None or coverage.lowest >= cfg.min_label_coverage:
        return None
    return Verdict.INSUFFICIENT_LABELS, (
        f"labelled {coverage.new:.0%} of the canary's and {coverage.prev:.0%} of the "
        f"control's sampled conversations < {cfg.min_label_coverage:.0%}: label them first"
    )


def _regressed(
    pair: ArmRates, tester: _Tester, levels: _Levels, bound: float, expected: float
) -> tuple[Verdict, str] | None:
    """REGRESSED when the bound is on the worse side and every other condition holds."""
    higher = _higher(pair)
    cfg = tester.cfg
    if not (bound > 0 if higher else bound < 0):
        return None
    events = min(pair.prev.events, pair.new.events)
    if events < cfg.min_events_for_regression or expected < cfg.min_expected_events:
        return None
    _, count = tester.e(ratio=1.0, toward_lower=not higher, alpha=levels.regression)
    if count is not None and count < 1 / levels.regression:
        return None
    return Verdict.REGRESSED, f"difference bound {bound:+.4g} is on the worse side of 0"


def _data_gate(
    pair: ArmRates, expected: float, cfg: ComparisonSettings
) -> tuple[Verdict, str] | None:
    events = min(pair.prev.events, pair.new.events)
    if events < cfg.min_events_per_arm:
        return Verdict.INSUFFICIENT_DATA, (
            f"{events:g} conversations in the smaller arm < {cfg.min_events_per_arm}"
        )
    if expected < cfg.min_expected_events:
        return Verdict.INSUFFICIENT_DATA, (
            f"{expected:.1f} events expected in the smaller arm at the pooled rate "
            f"< {cfg.min_expected_events:g}"
        )
    return None


def _withheld(
    interval: Interval, pair: ArmRates, verdict: tuple[Verdict, str]
) -> tuple[Verdict, str]:
    """Say so when the shown difference interval excludes 0 but no regression was declared."""
    higher = _higher(pair)
    excludes = interval.lower > 0 if higher else interval.upper < 0
    if excludes and verdict[0] is not Verdict.REGRESSED:
        return verdict[0], (
            f"{verdict[1]}; the interval is worse than 0, but the exact count test or a "
            "gate withholds the verdict"
        )
    return verdict


def _solved(
    name: str,
    pair: ArmRates,
    cfg: ComparisonSettings,
    evidence: float,
    level: float,
    fallback: tuple[Verdict, str],
    *,
    healthy: bool,
    previously_met: Mapping[str, float],
    solved_since: dict[str, float],
) -> tuple[tuple[Verdict, str], bool]:
    """The solved rule on a target that passed the gates: the verdict and whether met now."""
    if evidence < 1 / level:
        return fallback, False
    drop = f"rate shown down by more than {cfg.delta:.0%} at level {level:.3g}"
    if not healthy:
        return (fallback[0], f"{drop}, but the experiment is unhealthy"), False
    size = units(pair.prev, pair.new)
    since = previously_met.get(name)
    solved_since[name] = size if since is None else since
    if since is None:
        return (fallback[0], f"{drop} on this look; solved needs a later look too"), True
    if size < since * (1 + cfg.solved_min_new_data):
        wait = (
            f"solved needs {cfg.solved_min_new_data:.0%} more data than the look that first met it"
        )
        return (fallback[0], f"{drop} on this look; {wait}"), True
    earlier = f"one {size / since - 1:.0%} less data ago" if since > 0 else "an earlier look"
    return (Verdict.SOLVED_CANDIDATE, f"{drop}, on this look and {earlier}"), True


def _judge(
    name: str,
    pair: ArmRates,
    cfg: ComparisonSettings,
    levels: _Levels,
    *,
    target: bool,
    health: HealthCheck,
    previously_met: Mapping[str, float],
    solved_since: dict[str, float],
) -> MetricResult:
    """Every gate and test of one metric at one look (module docstring, in order)."""
    tester = _Tester(pair, cfg)
    expected = expected_events(pair)
    higher = _higher(pair)
    difference = _two_one_sided(pair, levels.regression, cfg)
    bound = difference.lower if higher else difference.upper
    margin = cfg.target_margin if target else cfg.margin_for(name)
    ni_e = tester.e(
        ratio=1 + margin if higher else 1 - margin, toward_lower=higher, alpha=cfg.alpha
    )
    shown_e = (
        tester.e(ratio=1 - cfg.delta, toward_lower=True, alpha=levels.relative) if target else ni_e
    )
    met = False
    verdict = _coverage_gate(pair, cfg) or _regressed(pair, tester, levels, bound, expected)
    verdict = verdict or _data_gate(pair, expected, cfg)
    if verdict is None:
        verdict = (
            (Verdict.NON_INFERIOR, f"relative change bounded within the {margin:.0%} margin")
            if ni_e[0] >= 1 / cfg.alpha
            else (Verdict.INCONCLUSIVE, "no bound excludes the margins yet")
        )
        if target and higher:
            verdict, met = _solved(
                name, pair, cfg, shown_e[0], levels.relative, verdict, healthy=health.healthy,
                previously_met=previously_met, solved_since=solved_since,
            )  # fmt: skip
    verdict = _withheld(difference, pair, verdict)
    return MetricResult(
        name=name,
        direction=pair.direction,
        prev=pair.prev,
        new=pair.new,
        difference=pair.new.rate - pair.prev.rate,
        difference_interval=difference,
        difference_level=levels.regression,
        regression_bound=bound,
        relative_change=pair.new.rate / pair.prev.rate - 1 if pair.prev.rate > 0 else None,
        relative_change_interval=_relative_two_one_sided(pair, levels.relative, cfg),
        relative_level=levels.relative,
        e_value=shown_e[0],
        count_e_value=shown_e[1],
        expected_events=expected,
        coverage=pair.coverage,
        solved_criteria_met=met,
        verdict=verdict[0],
        reason=verdict[1],
    )


def compare_versions(
    targets: Mapping[str, ArmRates],
    guardrails: Mapping[str, ArmRates],
    health: HealthCheck,
    *,
    previously_met: Mapping[str, float] | None = None,
    settings: ComparisonSettings | None = None,
) -> Comparison:
    """One look at a canary: verdict per problem type and guardrail, and the decision.

    ``previously_met`` is ``Comparison.solved_since`` of the previous look (persist it
    between looks); empty on the first look, so no type is solved on its first look.
    """
    cfg = settings or ComparisonSettings()
    met_before = dict(previously_met or {})
    regression_alpha = cfg.regression_alpha(len(targets) + len(guardrails))
    target_levels = _Levels(regression_alpha, cfg.solved_alpha(len(targets)))
    guardrail_levels = _Levels(regression_alpha, cfg.alpha)
    solved_since: dict[str, float] = {}
    target_results = {
        name: _judge(
            name,
            pair,
            cfg,
            target_levels,
            target=True,
            health=health,
            previously_met=met_before,
            solved_since=solved_since,
        )
        for name, pair in targets.items()
    }
    guardrail_results = {
        name: _judge(
            name,
            pair,
            cfg,
            guardrail_levels,
            target=False,
            health=health,
            previously_met={},
            solved_since={},
        )
        for name, pair in guardrails.items()
    }
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
    return Comparison(decision, reason, health, target_results, guardrail_results, solved_since)
