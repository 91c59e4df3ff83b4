"""The per-conversation rollup: counters per event kind and a lossless dict round trip."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from loraloop.events import Handoff, Outcome, QAVerdict, Turn
from streams.rollup import ConversationRollup

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _turn(index: int, role: str, **extra: object) -> Turn:
    return Turn.model_validate(
        {
            "event_id": f"t{index}",
            "ts": T0 + timedelta(seconds=index),
            "conversation_id": "c1",
            "user_id": "u1",
            "turn_index": index,
            "role": role,
            "text": "hello",
            **extra,
        }
    )


def test_counts_every_event_kind() -> None:
    base = {"conversation_id": "c1", "ts": T0 + timedelta(seconds=30)}
    outcome = {**base, "user_id": "u1", "value": 1.0}
    events = [
        _turn(1, "user"),
        _turn(0, "assistant", model_version="model_v2"),
        _turn(2, "assistant", model_version="model_v3"),
        Handoff.model_validate(
            {**base, "event_id": "h1", "user_id": "u1", "turn_index": 3, "initiated_by": "user"}
        ),
        QAVerdict.model_validate(
            {**base, "event_id": "q1", "reviewer": "r", "acceptance": "Risk",
             "problem_types": ["over_promise"], "risk_level": "low",
             "corrected_response": "fixed"}
        ),
        Outcome.model_validate({**outcome, "event_id": "o1", "kind": "cta_click"}),
        Outcome.model_validate({**outcome, "event_id": "o2", "kind": "refund"}),
        Outcome.model_validate({**outcome, "event_id": "o3", "kind": "refund"}),
    ]  # fmt: skip
    rollup = ConversationRollup()
    for event in events:
        rollup = rollup.apply(event)
    assert rollup == ConversationRollup(
        first_ts=T0.isoformat(),  # the earliest event, though it arrived second
        turns=3,
        served_version="model_v2",  # the first assistant turn applied
        handoff=True,
        qa_acceptance="Risk",
        qa_problem_types=("over_promise",),
        cta_clicks=1,
        conversions=0,
        refunds=2,
        events=8,
    )


def test_dict_round_trip_keeps_every_field() -> None:
    rollup = ConversationRollup(
        first_ts=T0.isoformat(), turns=4, served_version="v", handoff=True, qa_acceptance="Reject",
        qa_problem_types=("a", "b"), cta_clicks=1, conversions=2, refunds=3, events=9,
    )  # fmt: skip
    data = rollup.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(ConversationRollup)}
    assert ConversationRollup.from_dict(data) == rollup
