"""sudden_escalation: a handoff to a human, or a demand for one, out of the blue.

Fires on a Handoff event (any initiator) or on a user turn matching the
human-demand lexicon (``human_demand_terms``: 转人工, "talk to a human"), when
the conversation had no problem signal before — no detector fired on an
earlier event, nor on this same event (a turn that is both a complaint and a
demand is a complaint: the escalation was not sudden) — and the trigger is within
``escalation_window_turns`` (K) turns of a remembered assistant turn (the bot was
in the conversation; a handoff before the bot said anything is routing, not a
failure). Once per conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detectors.config import DetectorSettings
from detectors.lexicon import find_term
from detectors.signal import Detector, clip, make_signal
from detectors.state import ConversationState
from detectors.text import normalize
from loraloop.events import Handoff, Role, Signal, Turn


def _trigger_evidence(
    event: Turn | Handoff, normalized: str | None, settings: DetectorSettings
) -> dict[str, Any] | None:
    if isinstance(event, Handoff):
        return {
            "source": "handoff",
            "initiated_by": event.initiated_by.value,
            "reason": clip(event.reason, settings.evidence_max_chars),
        }
    if event.role is not Role.USER:
        return None
    text = normalize(event.text[: settings.max_scan_chars]) if normalized is None else normalized
    term = find_term(text, settings.human_demand_terms)
    if term is None:
        return None
    return {
        "source": "turn",
        "matched": term,
        "text": clip(event.text, settings.evidence_max_chars),
    }


def detect(
    state: ConversationState,
    event: Turn | Handoff,
    *,
    settings: DetectorSettings,
    same_event_signals: Sequence[Signal] = (),
    normalized: str | None = None,
) -> Signal | None:
    """A signal for a handoff or human demand with no problem seen so far, near the bot.

    ``same_event_signals`` are what the other detectors emitted for this event.
    """
    if state.fired or same_event_signals:
        return None
    distance = state.turns_from_assistant(event.turn_index)
    if distance is None or distance > settings.escalation_window_turns:
        return None
    evidence = _trigger_evidence(event, normalized, settings)
    if evidence is None:
        return None
    return make_signal(
        Detector.SUDDEN_ESCALATION,
        conversation_id=event.conversation_id,
        user_id=event.user_id,
        model_version=state.model_version,
        event_id=event.event_id,
        turn_index=event.turn_index,
        risk_weight=settings.risk_weights.sudden_escalation,
        evidence={"turn_index": event.turn_index, "turns_from_assistant": distance, **evidence},
        ts=event.ts,
    )
