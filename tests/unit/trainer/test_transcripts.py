"""The chat context a label corrects, cut from a stored conversation."""

from __future__ import annotations

from trainer.transcripts import TurnRow, context_messages


def turns(*spec: tuple[str, str]) -> list[TurnRow]:
    return [TurnRow(index, role, text) for index, (role, text) in enumerate(spec)]


CONVERSATION = turns(
    ("system", "You sell plans."),
    ("user", "hi"),
    ("assistant", "hello"),
    ("user", "price?"),
    ("assistant", "buy now!"),
    ("user", "that is not an answer"),
    ("human_agent", "let me help"),
    ("assistant", "sorry"),
)


def pairs(messages: object) -> list[tuple[str, str]]:
    assert isinstance(messages, list)
    return [(m.role, m.content) for m in messages]


def test_signal_picks_the_assistant_turn_at_or_before_it() -> None:
    context = context_messages(CONVERSATION, signal_turn=5)
    assert pairs(context) == [("user", "hi"), ("assistant", "hello"), ("user", "price?")]


def test_without_signal_the_first_human_agent_turn_anchors() -> None:
    assert pairs(context_messages(CONVERSATION)) == pairs(
        context_messages(CONVERSATION, signal_turn=4)
    )


def test_without_signal_or_handoff_the_last_assistant_turn_is_corrected() -> None:
    plain = turns(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    assert pairs(context_messages(plain)) == [("user", "a"), ("assistant", "b"), ("user", "c")]


def test_no_assistant_before_the_anchor_keeps_the_user_turns() -> None:
    direct = turns(("user", "help"), ("human_agent", "here"), ("assistant", "late"))
    assert pairs(context_messages(direct)) == [("user", "help")]


def test_expired_text_and_no_user_turn_yield_nothing() -> None:
    assert context_messages(turns(("user", " "), ("assistant", "x"))) is None
    assert context_messages([]) is None


def test_duplicate_turn_rows_count_once_and_order_is_by_index() -> None:
    rows = [TurnRow(1, "assistant", "b"), TurnRow(0, "user", "a"), TurnRow(0, "user", "a")]
    assert pairs(context_messages(rows)) == [("user", "a")]
