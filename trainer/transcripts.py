"""Which part of a conversation a label corrects, and the chat context before it (pure).

A sample is one sampled conversation; its label's ``corrected_response`` replaces
one assistant turn, the *target*. The target is found from the conversation's
first problem signal:

1. the anchor is the smallest ``turn_index`` a detector signal points at (a
   downvoted reply, a repeated follow-up, an escalation); without one, the first
   ``human_agent`` turn; without that, the end of the conversation;
2. the target is the last assistant turn at or before the anchor;
3. the context is every user / assistant turn before the target (``system`` and
   ``human_agent`` turns are left out: the first is deployment configuration, the
   second is not the model's voice), cut so that it ends with a user turn.

When no assistant turn precedes the anchor, the context is the user / assistant
turns up to the anchor. Turns whose text expired (the raw-text TTL) are left out;
a context with no user turn left yields nothing, and the sample is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from trainer.records import ChatMessage

USER = "user"
ASSISTANT = "assistant"
HUMAN_AGENT = "human_agent"
CHAT_ROLES = frozenset({USER, ASSISTANT})


@dataclass(frozen=True)
class TurnRow:
    """One stored turn of a conversation."""

    turn_index: int
    role: str
    text: str


def _ordered(turns: Iterable[TurnRow]) -> list[TurnRow]:
    """Turns by index, one per index (the first stored wins)."""
    by_index: dict[int, TurnRow] = {}
    for turn in turns:
        by_index.setdefault(turn.turn_index, turn)
    return [by_index[i] for i in sorted(by_index)]


def anchor_index(turns: Sequence[TurnRow], signal_turn: int | None) -> int | None:
    """The first problem signal's turn, else the first human-agent turn, else None (the end)."""
    if signal_turn is not None:
        return signal_turn
    return next((t.turn_index for t in turns if t.role == HUMAN_AGENT), None)


def target_index(turns: Sequence[TurnRow], anchor: int | None) -> int | None:
    """The assistant turn the label corrects: the last one at or before the anchor."""
    candidates = [
        t.turn_index
        for t in turns
        if t.role == ASSISTANT and (anchor is None or t.turn_index <= anchor)
    ]
    return candidates[-1] if candidates else None


def context_messages(
    turns: Iterable[TurnRow], *, signal_turn: int | None = None
) -> list[ChatMessage] | None:
    """The chat context the corrected response answers, or None when nothing usable is left."""
    ordered = _ordered(turns)
    anchor = anchor_index(ordered, signal_turn)
    target = target_index(ordered, anchor)
    if target is not None:
        kept = [t for t in ordered if t.turn_index < target]
    else:
        kept = [t for t in ordered if anchor is None or t.turn_index <= anchor]
    messages = [
        ChatMessage(role=t.role, content=t.text)
        for t in kept
        if t.role in CHAT_ROLES and t.text.strip()
    ]
    while messages and messages[-1].role != USER:
        messages.pop()
    return messages or None
