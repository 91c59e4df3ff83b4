"""Verdicts per problem type and guardrail, and the overall decision, on hand-built looks."""

import pytest

from analytics.stats import (
    ArmRates,
    ComparisonSettings,
    Decision,
    Direction,
    HealthCheck,
    RateEstimate,
    Verdict,
    check_health,
    compare_versions,
)

HEALTHY = HealthCheck(srm_p_value=0.5, multiple_exposure_share=0.0, reasons=())
SRM = HealthCheck(srm_p_value=1e-9, multiple_exposure_share=0.0, reasons=("srm",))
NULLS = {f"null_{i}": 0.05 for i in range(4)}


def _arm(p: float, events: int) -> RateEstimate:
    return RateEstimate(p, p * (1 - p) / events, events, events, p * events)


def _pair(prev: float, new: float, events: int, **kwargs: Direction) -> ArmRates:
    return ArmRates(_arm(prev, events), _arm(new, events), **kwargs)


def _targets(events: int = 20_000, **rates: tuple[float, float]) -> dict[str, ArmRates]:
    return {name: _pair(prev, new, events) for name, (prev, new) in rates.items()}


def test_verdicts_are_str_enums() -> None:
    assert Verdict("solved_candidate") is Verdict.SOLVED_CANDIDATE
    assert f"{Decision.ROLL_BACK}" == "roll_back"


def test_insufficient_data_below_the_minimum_per_arm() -> None:
    result = compare_versions({"t": _pair(0.1, 0.01, 149)}, {}, HEALTHY)
    assert result.targets["t"].verdict is Verdict.INSUFFICIENT_DATA
    assert "149" in result.targets["t"].reason
    assert result.decision is Decision.PROCEED
    enough = compare_versions({"t": _pair(0.2, 0.2, 150)}, {}, HEALTHY)
    assert enough.targets["t"].verdict is Verdict.INCONCLUSIVE


def test_insufficient_data_below_the_expected_events() -> None:
    """150 conversations per arm at 10 %: 15 events expected, fewer than the 20 asked for."""
    result = compare_versions({"t": _pair(0.1, 0.1, 150)}, {}, HEALTHY)
    assert result.targets["t"].verdict is Verdict.INSUFFICIENT_DATA
    assert "expected" in result.targets["t"].reason
    assert result.targets["t"].expected_events == pytest.approx(15)


def test_a_clear_regression_rolls_back_before_the_minimum_for_solved() -> None:
    result = compare_versions({"t": _pair(0.05, 0.5, 100)}, {}, HEALTHY)
    assert result.targets["t"].verdict is Verdict.REGRESSED
    assert result.targets["t"].regression_bound > 0
    assert result.decision is Decision.ROLL_BACK
    assert "t" in result.reason


def test_no_regression_below_its_own_minimum() -> None:
    result = compare_versions({"t": _pair(0.05, 0.5, 40)}, {}, HEALTHY)
    assert result.targets["t"].verdict is Verdict.INSUFFICIENT_DATA
    assert result.decision is Decision.PROCEED


def test_solved_needs_two_consecutive_looks() -> None:
    targets = _targets(fixed=(0.10, 0.04), **{k: (v, v) for k, v in NULLS.items()})
    first = compare_versions(targets, {}, HEALTHY)
    assert first.targets["fixed"].verdict is Verdict.NON_INFERIOR
    assert "later look" in first.targets["fixed"].reason
    assert first.solved_criteria_met == {"fixed"}

    same = compare_versions(targets, {}, HEALTHY, previously_met=first.solved_since)
    assert same.targets["fixed"].verdict is Verdict.NON_INFERIOR  # no new data: one piece
    assert "more data" in same.targets["fixed"].reason
    assert same.solved_since == first.solved_since  # the streak keeps its start

    grown = _targets(fixed=(0.10, 0.04), **{k: (v, v) for k, v in NULLS.items()}, events=26_000)
    second = compare_versions(grown, {}, HEALTHY, previously_met=same.solved_since)
    assert second.targets["fixed"].verdict is Verdict.SOLVED_CANDIDATE
    assert second.targets["fixed"].relative_change == pytest.approx(-0.6)
    assert second.targets["fixed"].relative_change_interval.upper < -0.2
    others = {r.verdict for n, r in second.targets.items() if n != "fixed"}
    assert others == {Verdict.INCONCLUSIVE}
    assert second.decision is Decision.PROCEED

    broken = _targets(fixed=(0.10, 0.095))  # the next look no longer shows it
    third = compare_versions(broken, {}, HEALTHY, previously_met=second.solved_since)
    assert third.targets["fixed"].verdict is not Verdict.SOLVED_CANDIDATE
    assert third.solved_criteria_met == frozenset()


def test_a_drop_smaller_than_delta_is_never_solved() -> None:
    targets = _targets(t=(0.10, 0.085))  # -15 %, very precisely measured
    result = compare_versions(targets, {}, HEALTHY, previously_met={"t": 0.0})
    assert result.targets["t"].verdict is Verdict.NON_INFERIOR
    assert not result.targets["t"].solved_criteria_met


def test_solved_is_bonferroni_over_the_problem_types() -> None:
    # e ≈ 51 for 0.10 → 0.072 at 20k per arm: ≥ 1/α = 20 alone, < K/α = 100 with K = 5.
    alone = compare_versions(_targets(t=(0.10, 0.072)), {}, HEALTHY, previously_met={"t": 0.0})
    assert 20 < alone.targets["t"].e_value < 100
    assert alone.targets["t"].verdict is Verdict.SOLVED_CANDIDATE
    assert alone.targets["t"].relative_level == pytest.approx(0.05)

    crowd = _targets(t=(0.10, 0.072), **{k: (v, v) for k, v in NULLS.items()})
    with_nulls = compare_versions(crowd, {}, HEALTHY, previously_met={"t": 0.0})
    assert with_nulls.targets["t"].verdict is not Verdict.SOLVED_CANDIDATE
    assert with_nulls.targets["t"].relative_level == pytest.approx(0.01)
    assert with_nulls.solved_criteria_met == frozenset()
    # the shown interval is the decision's: its upper end is not below -delta at alpha/K
    assert with_nulls.targets["t"].relative_change_interval.upper > -0.2


def test_unhealthy_experiment_holds_and_solves_nothing() -> None:
    targets = _targets(fixed=(0.10, 0.04))
    result = compare_versions(targets, {}, SRM, previously_met={"fixed": 0.0})
    assert result.decision is Decision.HOLD
    assert result.reason == "srm"
    assert result.targets["fixed"].verdict is not Verdict.SOLVED_CANDIDATE
    assert "unhealthy" in result.targets["fixed"].reason
    assert result.solved_criteria_met == frozenset()


def test_regression_outranks_an_unhealthy_experiment() -> None:
    result = compare_versions(_targets(t=(0.05, 0.10)), {}, SRM)
    assert result.decision is Decision.ROLL_BACK


def test_guardrail_that_gets_worse_downward_rolls_back() -> None:
    conversion = _pair(0.10, 0.07, 20_000, direction=Direction.LOWER_IS_WORSE)
    result = compare_versions({}, {"conversion_rate": conversion}, HEALTHY)
    assert result.guardrails["conversion_rate"].verdict is Verdict.REGRESSED
    assert result.guardrails["conversion_rate"].regression_bound < 0
    assert result.decision is Decision.ROLL_BACK


def test_guardrails_within_their_margins_are_non_inferior() -> None:
    guardrails = {
        "conversion_rate": _pair(0.10, 0.105, 40_000, direction=Direction.LOWER_IS_WORSE),
        "risk_reject_rate": _pair(0.05, 0.049, 40_000),
    }
    result = compare_versions({}, guardrails, HEALTHY)
    assert {r.verdict for r in result.guardrails.values()} == {Verdict.NON_INFERIOR}
    assert result.all_guardrails_non_inferior
    assert result.decision is Decision.PROCEED


def test_guardrail_margin_comes_from_settings() -> None:
    # +12 % handoffs with tight bounds: inside the 20 % handoff margin, outside the 10 % default.
    pair = _pair(0.05, 0.056, 200_000)
    settings = ComparisonSettings(familywise_regression=False, min_events_for_regression=10**9)
    handoff = compare_versions({}, {"abnormal_handoff_rate": pair}, HEALTHY, settings=settings)
    other = compare_versions({}, {"other_rate": pair}, HEALTHY, settings=settings)
    assert handoff.guardrails["abnormal_handoff_rate"].verdict is Verdict.NON_INFERIOR
    assert other.guardrails["other_rate"].verdict is Verdict.INCONCLUSIVE


def test_zero_previous_rate_has_no_relative_change() -> None:
    result = compare_versions({"t": _pair(0.0, 0.0, 1_000)}, {}, HEALTHY)
    assert result.targets["t"].relative_change is None
    assert result.targets["t"].verdict is Verdict.INSUFFICIENT_DATA  # no event expected
    low, high = (
        result.targets["t"].difference_interval.lower,
        result.targets["t"].difference_interval.upper,
    )
    assert low < 0 < high  # both rates 0 is not [0, 0]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORALOOP_COMPARE__DELTA", "0.3")
    monkeypatch.setenv("LORALOOP_COMPARE__MIN_EVENTS_PER_ARM", "500")
    monkeypatch.setenv("LORALOOP_COMPARE__GUARDRAIL_MARGINS", '{"conversion_rate": 0.15}')
    settings = ComparisonSettings()
    assert (settings.delta, settings.min_events_per_arm) == (0.3, 500)
    assert settings.margin_for("conversion_rate") == 0.15
    assert settings.margin_for("anything_else") == settings.guardrail_margin
    result = compare_versions({"t": _pair(0.1, 0.05, 400)}, {}, HEALTHY, settings=settings)
    assert result.targets["t"].verdict is Verdict.INSUFFICIENT_DATA


def test_settings_refuse_unsafe_values() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ComparisonSettings(alpha=0.7)
    with pytest.raises(ValueError, match="margins"):
        ComparisonSettings(guardrail_margins={"x": -0.1})


def test_familywise_regression_splits_alpha() -> None:
    assert ComparisonSettings().regression_alpha(5) == pytest.approx(0.01)
    assert ComparisonSettings(familywise_regression=False).regression_alpha(5) == 0.05


def test_check_health_feeds_compare_versions() -> None:
    health = check_health([5_000, 5_000], [0.5, 0.5], users_in_both=500)
    result = compare_versions(_targets(t=(0.1, 0.1)), {}, health)
    assert result.decision is Decision.HOLD
    assert "both versions" in result.reason
