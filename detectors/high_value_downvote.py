"""high_value_downvote: a thumbs_down from a high-value or VIP user.

The tier comes from the Feedback's ``user_tier`` when the producer set it, else
from the users lookup the caller passes in, else from the tier this
conversation's state learned earlier. Tiers that count are ``high_value_tiers``.
Once per conversation.
"""

from __future__ import annotations

from detectors.config import DetectorSettings
from detectors.signal import Detector, clip, make_signal, should_fire
from detectors.state import ConversationState
from loraloop.events import Feedback, FeedbackKind, Signal, Tier


def resolve_tier(
    state: ConversationState, feedback: Feedback, user_tier: Tier | None
) -> tuple[Tier | None, str | None]:
    """The user's tier and where it came from: "event", "lookup", "state" or nowhere."""
    if feedback.user_tier is not None:
        return feedback.user_tier, "event"
    if user_tier is not None:
        return user_tier, "lookup"
    if state.user_tier is not None:
        return state.user_tier, "state"
    return None, None


def detect(
    state: ConversationState,
    feedback: Feedback,
    *,
    settings: DetectorSettings,
    user_tier: Tier | None = None,
) -> Signal | None:
    """A signal for a thumbs_down from a user in a high-value tier (once per conversation)."""
    if feedback.kind is not FeedbackKind.THUMBS_DOWN:
        return None
    tier, source = resolve_tier(state, feedback, user_tier)
    weight = settings.risk_weights.high_value_downvote
    if tier not in settings.high_value_tiers or not should_fire(
        state.fired, Detector.HIGH_VALUE_DOWNVOTE, weight
    ):
        return None
    return make_signal(
        Detector.HIGH_VALUE_DOWNVOTE,
        conversation_id=feedback.conversation_id,
        user_id=feedback.user_id,
        model_version=state.model_version,
        event_id=feedback.event_id,
        turn_index=feedback.turn_index,
        risk_weight=weight,
        evidence={
            "kind": feedback.kind.value,
            "tier": None if tier is None else tier.value,
            "tier_source": source,
            "turn_index": feedback.turn_index,
            "comment": clip(feedback.comment, settings.evidence_max_chars),
        },
        ts=feedback.ts,
    )
