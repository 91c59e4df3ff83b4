"""qa_flag: a QA reviewer judged the conversation Risk or Reject.

The risk weight is the detector's weight times the multipliers of the verdict's
risk level and acceptance, so a critical Reject outweighs a low Risk. The
detector fires once per conversation, and again only for a verdict with a
strictly higher weight (a second reviewer escalates Risk to Reject), so the
sampler sees the worst verdict.
"""

from __future__ import annotations

from typing import Final

from detectors.config import DetectorSettings
from detectors.signal import Detector, make_signal, should_fire
from detectors.state import ConversationState
from loraloop.events import Acceptance, QAVerdict, Signal

FLAGGING: Final = frozenset({Acceptance.RISK, Acceptance.REJECT})
"""Acceptances that flag a conversation."""


def risk_weight(verdict: QAVerdict, settings: DetectorSettings) -> float:
    """The qa_flag weight scaled by the verdict's risk level and acceptance."""
    return (
        settings.risk_weights.qa_flag
        * settings.qa_risk_level_weights.of(verdict.risk_level)
        * settings.qa_acceptance_weights.of(verdict.acceptance)
    )


def detect(
    state: ConversationState, verdict: QAVerdict, *, settings: DetectorSettings
) -> Signal | None:
    """A signal for a Risk or Reject verdict weighing more than any earlier one."""
    if verdict.acceptance not in FLAGGING:
        return None
    weight = risk_weight(verdict, settings)
    if not should_fire(state.fired, Detector.QA_FLAG, weight):
        return None
    return make_signal(
        Detector.QA_FLAG,
        conversation_id=verdict.conversation_id,
        user_id=state.user_id or settings.unknown_user_id,
        model_version=state.model_version,
        event_id=verdict.event_id,
        turn_index=None,
        risk_weight=weight,
        evidence={
            "acceptance": verdict.acceptance.value,
            "risk_level": verdict.risk_level.value,
            "problem_types": list(verdict.problem_types),
            "reviewer": verdict.reviewer,
            "sample_id": verdict.sample_id,
        },
        ts=verdict.ts,
    )
