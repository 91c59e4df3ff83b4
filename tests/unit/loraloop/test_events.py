"""Contracts accept good input and reject bad input with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from loraloop.events import (
    MAX_TEXT_CHARS,
    Feedback,
    QAVerdict,
    Tier,
    Turn,
    UserProfile,
    describe_error,
    first_field,
)

TURN: dict[str, Any] = {
    "event_id": "e1",
    "ts": "2026-11-01T10:00:00+08:00",
    "conversation_id": "c1",
    "user_id": "u1",
    "turn_index": 1,
    "role": "assistant",
    "text": "退款政策：14 天内全额退款。",
    "model_version": "model_v1",
}


def _error_field(model: type[Any], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    field = first_field(info.value)
    assert field is not None
    assert field in describe_error(info.value)
    return field


def test_turn_accepts_a_valid_assistant_turn() -> None:
    turn = Turn.model_validate(TURN)
    assert turn.model_version == "model_v1"
    assert turn.ts.utcoffset() is not None
    assert turn.has_cta is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"event_id": "  "}, "event_id"),
        ({"role": "robot"}, "role"),
        ({"ts": "2026-11-01T10:00:00"}, "ts"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text"),
        ({"turn_index": "first"}, "turn_index"),
        ({"turn_index": -1}, "turn_index"),
        ({"model_version": None}, "model_version"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_turn_rejects_bad_input_naming_the_field(change: dict[str, Any], field: str) -> None:
    data = {**TURN, **change}
    data = {k: v for k, v in data.items() if not (k == "event_id" and v is None)}
    assert _error_field(Turn, data) == field


def test_user_turn_needs_no_model_version() -> None:
    data = {k: v for k, v in TURN.items() if k != "model_version"} | {"role": "user"}
    assert Turn.model_validate(data).model_version is None


def test_missing_field_is_named() -> None:
    data = {k: v for k, v in TURN.items() if k != "conversation_id"}
    assert _error_field(Turn, data) == "conversation_id"


def test_feedback_carries_optional_tier() -> None:
    fb = Feedback.model_validate(
        {
            "event_id": "f1",
            "ts": "2026-11-01T10:00:00Z",
            "conversation_id": "c1",
            "user_id": "u1",
            "kind": "thumbs_down",
            "user_tier": "vip",
        }
    )
    assert fb.user_tier is Tier.VIP
    assert fb.turn_index is None


def test_qa_verdict_rejects_unknown_acceptance_and_bad_problem_type() -> None:
    base = {
        "event_id": "q1",
        "ts": "2026-11-01T10:00:00Z",
        "conversation_id": "c1",
        "reviewer": "qa-1",
        "acceptance": "Reject",
        "problem_types": ["over_promise"],
        "risk_level": "high",
    }
    assert QAVerdict.model_validate(base).problem_types == ["over_promise"]
    assert _error_field(QAVerdict, base | {"acceptance": "Maybe"}) == "acceptance"
    assert _error_field(QAVerdict, base | {"problem_types": ["not a type!"]}) == "problem_types.0"


def test_user_profile_rejects_negative_value_and_nan() -> None:
    base = {"event_id": "p1", "ts": "2026-11-01T10:00:00Z", "user_id": "u1", "tier": "vip"}
    assert _error_field(UserProfile, base | {"lifetime_value": -1}) == "lifetime_value"
    assert _error_field(UserProfile, base | {"lifetime_value": float("nan")}) == "lifetime_value"


def test_not_json_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Turn.model_validate_json(b"{not json")
    assert "json" in describe_error(info.value).lower()


def test_wrong_type_is_rejected() -> None:
    assert _error_field(Turn, {**TURN, "has_cta": "perhaps"}) == "has_cta"
