"""complaint: the user complains, asks for a refund or disputes, by feedback or in words.

Fires on a complaint, refund_request or dispute Feedback event, or on a user
turn that matches the complaint lexicon (``complaint_terms``, Chinese and
English; see :mod:`detectors.lexicon` for how terms match) in its first
``max_scan_chars`` characters. Once per conversation: the first trigger
carries the evidence.
"""

from __future__ import annotations

from typing import Any, Final

from detectors.config import DetectorSettings
from detectors.lexicon import find_term
from detectors.signal import Detector, clip, make_signal, should_fire
from detectors.state import ConversationState
from detectors.text import normalize
from loraloop.events import Feedback, FeedbackKind, Role, Signal, Turn

COMPLAINT_FEEDBACK: Final = frozenset(
    {FeedbackKind.COMPLAINT, FeedbackKind.REFUND_REQUEST, FeedbackKind.DISPUTE}
)
"""Feedback kinds that are complaints by themselves."""


def _turn_evidence(
    turn: Turn, normalized: str | None, settings: DetectorSettings
) -> dict[str, Any] | None:
    if turn.role is not Role.USER:
        return None
    text = normalize(turn.text[: settings.max_scan_chars]) if normalized is None else normalized
    term = find_term(text, settings.complaint_terms)
    if term is None:
        return None
    return {
        "source": "turn",
        "turn_index": turn.turn_index,
        "matched": term,
        "text": clip(turn.text, settings.evidence_max_chars),
    }


def _feedback_evidence(feedback: Feedback, settings: DetectorSettings) -> dict[str, Any] | None:
    if feedback.kind not in COMPLAINT_FEEDBACK:
        return None
    return {
        "source": "feedback",
        "kind": feedback.kind.value,
        "turn_index": feedback.turn_index,
        "comment": clip(feedback.comment, settings.evidence_max_chars),
    }


def detect(
    state: ConversationState,
    event: Turn | Feedback,
    *,
    settings: DetectorSettings,
    normalized: str | None = None,
) -> Signal | None:
    """A signal for a complaint feedback or a user turn in the lexicon (once per conversation).

    ``normalized`` is the turn's :func:`~detectors.text.normalize`'d text when the
    caller has it already.
    """
    weight = settings.risk_weights.complaint
    if not should_fire(state.fired, Detector.COMPLAINT, weight):
        return None
    if isinstance(event, Turn):
        evidence = _turn_evidence(event, normalized, settings)
    else:
        evidence = _feedback_evidence(event, settings)
    if evidence is None:
        return None
    return make_signal(
        Detector.COMPLAINT,
        conversation_id=event.conversation_id,
        user_id=event.user_id,
        model_version=state.model_version,
        event_id=event.event_id,
        turn_index=event.turn_index,
        risk_weight=weight,
        evidence=evidence,
        ts=event.ts,
    )
