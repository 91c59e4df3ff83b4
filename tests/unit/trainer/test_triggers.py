"""When a training cycle is due: period, per-type threshold, alert line, cooldown, nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from trainer.service_config import TrainerSettings
from trainer.triggers import (
    REASON_ALERT,
    REASON_PERIOD,
    REASON_THRESHOLD,
    Observations,
    alert_since,
    due,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
SETTINGS = TrainerSettings(
    period_s=86_400,
    problem_threshold=50,
    alert_rate=0.05,
    alert_window_s=3_600,
    alert_min_conversations=200,
    min_gap_s=600,
)


def observed(ago_s: float | None = 7_200, **fields: object) -> Observations:
    last = None if ago_s is None else NOW - timedelta(seconds=ago_s)
    return Observations(now=NOW, last_cycle_at=last, **fields)  # type: ignore[arg-type]


def test_nothing_due_between_cycles() -> None:
    quiet = observed(
        new_labels_per_type={"over_promise": 49},
        conversations=1_000,
        flagged={"detector:complaint": 49},
    )
    assert due(quiet, SETTINGS) is None


def test_period_elapsed() -> None:
    trigger = due(observed(ago_s=86_400), SETTINGS)
    assert trigger is not None
    assert trigger.reason == REASON_PERIOD
    assert trigger.details[REASON_PERIOD]["elapsed_s"] == 86_400


def test_first_cycle_is_due_by_period() -> None:
    trigger = due(observed(ago_s=None), SETTINGS)
    assert trigger is not None
    assert trigger.reason == REASON_PERIOD
    assert trigger.details[REASON_PERIOD]["last_cycle_at"] is None


def test_threshold_per_type() -> None:
    trigger = due(observed(new_labels_per_type={"over_promise": 50, "x": 3}), SETTINGS)
    assert trigger is not None
    assert trigger.reason == REASON_THRESHOLD
    assert trigger.details[REASON_THRESHOLD]["labelled_since_last_cycle"] == {"over_promise": 50}


def test_threshold_is_not_a_sum_over_types() -> None:
    assert due(observed(new_labels_per_type={"a": 30, "b": 30}), SETTINGS) is None


def test_alert_line_crossed() -> None:
    obs = observed(conversations=400, flagged={"qa:over_promise": 20, "detector:complaint": 3})
    trigger = due(obs, SETTINGS)
    assert trigger is not None
    assert trigger.reason == REASON_ALERT
    assert trigger.details[REASON_ALERT]["rates"] == {"qa:over_promise": 0.05}


def test_alert_needs_enough_conversations() -> None:
    assert due(observed(conversations=199, flagged={"detector:complaint": 199}), SETTINGS) is None


def test_cooldown_holds_every_trigger() -> None:
    obs = observed(
        ago_s=599, new_labels_per_type={"a": 500}, conversations=999, flagged={"qa:a": 999}
    )
    assert due(obs, SETTINGS) is None


def test_reason_order_and_all_evidence() -> None:
    obs = observed(
        ago_s=90_000, new_labels_per_type={"a": 50}, conversations=200, flagged={"qa:a": 10}
    )
    trigger = due(obs, SETTINGS)
    assert trigger is not None
    assert trigger.reason == REASON_THRESHOLD
    assert set(trigger.details) == {REASON_THRESHOLD, REASON_ALERT, REASON_PERIOD}


def test_alert_window_starts_no_earlier_than_the_last_cycle() -> None:
    assert alert_since(NOW, None, SETTINGS) == NOW - timedelta(hours=1)
    recent = NOW - timedelta(minutes=10)
    assert alert_since(NOW, recent, SETTINGS) == recent
    assert alert_since(NOW, NOW - timedelta(days=3), SETTINGS) == NOW - timedelta(hours=1)


def test_settings_refuse_a_gap_longer_than_the_period() -> None:
    with pytest.raises(ValidationError, match="MIN_GAP_S"):
        TrainerSettings(period_s=60, min_gap_s=120)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORALOOP_TRAINER__PROBLEM_THRESHOLD", "7")
    monkeypatch.setenv("LORALOOP_TRAINER__PERIOD_S", "3600")
    settings = TrainerSettings()
    assert (settings.problem_threshold, settings.period_s) == (7, 3600)
