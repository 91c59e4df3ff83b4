"""The rollout controller: roll back on regression, hold when unhealthy, advance on data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics.stats import (
    ArmRates,
    ClusterSums,
    Comparison,
    Direction,
    HealthCheck,
    compare_versions,
    ratio_rate,
)
from trainer.rollout import (
    RolloutAction,
    RolloutState,
    RolloutStatus,
    arm_conversations,
    decide,
    routing_table,
)
from trainer.rollout_config import RolloutSettings
from trainer.rollout_errors import RolloutStateError

T0 = datetime(2025, 6, 1, tzinfo=UTC)
HEALTHY = HealthCheck(0.5, 0.0, ())
UNHEALTHY = HealthCheck(1e-6, 0.0, ("sample ratio mismatch",))
SETTINGS = RolloutSettings(min_conversations_per_step=1000)


def _arm(rate: float, users: int) -> ClusterSums:
    positives = rate * users  # one conversation per user, y in {0, 1}
    return ClusterSums(users, users, positives, users, positives, positives)


def _comparison(
    *, prev: float = 0.1, new: float = 0.1, users: int = 200_000, health: HealthCheck = HEALTHY
) -> Comparison:
    pair = ArmRates(ratio_rate(_arm(prev, users)), ratio_rate(_arm(new, users)))
    guard = ArmRates(
        ratio_rate(_arm(0.3, users)), ratio_rate(_arm(0.3, users)), Direction.LOWER_IS_WORSE
    )
    return compare_versions({"missing_knowledge": pair}, {"conversion_rate": guard}, health)


def _state(step: int = 0, at_start: int = 0) -> RolloutState:
    return RolloutState("model_v2", "model_v1", step, RolloutStatus.RUNNING, T0, at_start)


def test_rolls_back_on_a_regression() -> None:
    decision = decide(_comparison(new=0.2), _state(2), SETTINGS, now=T0 + timedelta(hours=1))
    assert decision.action is RolloutAction.ROLL_BACK
    assert decision.state.status is RolloutStatus.ROLLED_BACK
    assert "missing_knowledge" in decision.reason
    table = routing_table(decision.state, SETTINGS)
    assert (table.stable, table.canary) == ("model_v1", None)
    with pytest.raises(RolloutStateError, match="start a new rollout"):
        decide(_comparison(), decision.state, SETTINGS)


def test_holds_while_unhealthy_then_resumes() -> None:
    held = decide(_comparison(health=UNHEALTHY), _state(1), SETTINGS)
    assert held.action is RolloutAction.HOLD
    assert held.state.status is RolloutStatus.HELD
    assert held.state.step_index == 1
    assert routing_table(held.state, SETTINGS).share_percent == SETTINGS.steps[1]
    resumed = decide(_comparison(), held.state, SETTINGS)
    assert resumed.action is RolloutAction.ADVANCE
    assert resumed.state.status is RolloutStatus.RUNNING


def test_advances_only_with_enough_data_in_the_step() -> None:
    few = _comparison(users=500)
    assert arm_conversations(few) == 500
    stay = decide(few, _state(0), SETTINGS)
    assert stay.action is RolloutAction.STAY
    assert stay.state.step_index == 0
    # Plenty in total, but counted since the step began it is too little.
    plenty = _comparison()
    assert decide(plenty, _state(0, at_start=199_500), SETTINGS).action is RolloutAction.STAY
    moved = decide(plenty, _state(0), SETTINGS, now=T0 + timedelta(hours=2))
    assert moved.action is RolloutAction.ADVANCE
    assert moved.state.step_index == 1
    assert moved.state.step_started_at == T0 + timedelta(hours=2)
    assert moved.state.conversations_at_step_start == 200_000


def test_waits_for_guardrails_unless_told_not_to() -> None:
    unsure = _comparison(users=2_000)  # enough per step, too little to show non-inferiority
    assert not unsure.all_guardrails_non_inferior
    decision = decide(unsure, _state(0), SETTINGS)
    assert decision.action is RolloutAction.STAY
    assert "conversion_rate" in decision.reason
    relaxed = RolloutSettings(
        min_conversations_per_step=1000, require_guardrails_non_inferior=False
    )
    assert decide(unsure, _state(0), relaxed).action is RolloutAction.ADVANCE


def test_stays_before_100_percent_while_no_target_is_solved() -> None:
    last_canary = len(SETTINGS.steps) - 2
    decision = decide(_comparison(), _state(last_canary), SETTINGS)
    assert decision.action is RolloutAction.STAY
    assert "no target problem type is solved" in decision.reason
    assert decision.state.step_index == last_canary
    earlier = decide(_comparison(), _state(0), SETTINGS)
    assert earlier.action is RolloutAction.ADVANCE


def test_completes_at_100_percent() -> None:
    state = _state(0)
    actions = []
    settings = SETTINGS.model_copy(update={"complete_requires_solved_target": False})
    while state.status is RolloutStatus.RUNNING:
        decision = decide(_comparison(), state, settings)
        actions.append(decision.action)
        state = decision.state
        state = RolloutState(**{**state.to_dict(), "status": state.status,
                                "step_started_at": state.step_started_at,
                                "conversations_at_step_start": 0})  # fmt: skip
    assert actions == [RolloutAction.ADVANCE] * 3 + [RolloutAction.COMPLETE]
    assert state.status is RolloutStatus.COMPLETED
    assert state.share_percent(SETTINGS) == 100
    table = routing_table(state, SETTINGS)
    assert (table.stable, table.canary) == ("model_v2", None)


def test_state_round_trips_through_json() -> None:
    state = _state(3, at_start=42)
    assert RolloutState.from_dict(state.to_dict()) == state
