"""``apply``: one event through the replay guard, every detector, and the state update.

Pure: the same (state, event, tier, settings) always gives the same new state
and signals, and a replayed event returns the state unchanged with no signals,
so the stream layer may re-apply events after a crash (at-least-once) safely.
Detectors see the state as it was before the event; the update follows. Per
event the work is bounded: for a user turn, one normalization of at most
``max_scan_chars`` characters, one fingerprint compared with at most M
remembered ones, and two lexicon scans; for other events, a few comparisons.
"""

from __future__ import annotations

from detectors import complaint, high_value_downvote, qa_flag, repeated_followup, sudden_escalation
from detectors.config import DetectorSettings
from detectors.exceptions import ConversationMismatchError, UnsupportedEventError
from detectors.state import ConversationEvent, ConversationState
from detectors.text import normalize
from loraloop.events import Feedback, Handoff, Outcome, QAVerdict, Role, Signal, Tier, Turn


def _present(*signals: Signal | None) -> list[Signal]:
    return [s for s in signals if s is not None]


def _user_turn(
    state: ConversationState, turn: Turn, settings: DetectorSettings
) -> tuple[ConversationState, list[Signal]]:
    normalized = normalize(turn.text[: settings.max_scan_chars])
    shingle_set = repeated_followup.fingerprint(normalized, settings)
    match = None
    if shingle_set is not None:
        match = repeated_followup.find_repeat(
            state, turn.turn_index, shingle_set, settings=settings
        )
    signals = _present(
        repeated_followup.detect(state, turn, match, settings=settings),
        complaint.detect(state, turn, settings=settings, normalized=normalized),
    )
    signals += _present(
        sudden_escalation.detect(
            state, turn, settings=settings, same_event_signals=signals, normalized=normalized
        )
    )
    new_state = state.with_user_turn(
        turn.turn_index, shingle_set, repeated=match is not None, keep=settings.max_fingerprints
    )
    return new_state, signals


def _turn(
    state: ConversationState, turn: Turn, settings: DetectorSettings
) -> tuple[ConversationState, list[Signal]]:
    if turn.role is Role.USER:
        return _user_turn(state, turn, settings)
    if turn.role is Role.ASSISTANT:
        keep = settings.max_fingerprints
        return state.with_assistant_turn(turn.turn_index, turn.model_version, keep=keep), []
    return state, []


def _other(
    state: ConversationState,
    event: Feedback | Handoff | QAVerdict | Outcome,
    user_tier: Tier | None,
    settings: DetectorSettings,
) -> list[Signal]:
    if isinstance(event, Feedback):
        return _present(
            complaint.detect(state, event, settings=settings),
            high_value_downvote.detect(state, event, settings=settings, user_tier=user_tier),
        )
    if isinstance(event, Handoff):
        return _present(sudden_escalation.detect(state, event, settings=settings))
    if isinstance(event, QAVerdict):
        return _present(qa_flag.detect(state, event, settings=settings))
    return []


def _check(state: ConversationState, event: ConversationEvent) -> None:
    if not isinstance(event, Turn | Feedback | Handoff | QAVerdict | Outcome):
        msg = f"{type(event).__name__} has no conversation: pass the user's tier as user_tier"
        raise UnsupportedEventError(msg)
    if event.conversation_id != state.conversation_id:
        msg = (
            f"event {event.event_id} of conversation {event.conversation_id!r} applied to the "
            f"state of {state.conversation_id!r}: look the state up by the event's conversation_id"
        )
        raise ConversationMismatchError(msg)


def apply(
    state: ConversationState,
    event: ConversationEvent,
    *,
    settings: DetectorSettings,
    user_tier: Tier | None = None,
) -> tuple[ConversationState, list[Signal]]:
    """Run every detector on an event and update the state; a replay changes nothing.

    ``user_tier`` is the user's tier from the users lookup, when the caller has
    it (an event's own ``user_tier`` takes precedence).
    """
    _check(state, event)
    window = settings.applied_window
    if state.has_applied(event, window):
        return state, []
    event_tier = event.user_tier if isinstance(event, Feedback) else None
    user_id = None if isinstance(event, QAVerdict) else event.user_id
    if isinstance(event, Turn):
        updated, signals = _turn(state, event, settings)
    else:
        signals = _other(state, event, user_tier, settings)
        updated = state.with_other_event()
    updated = updated.with_user(user_id, event_tier or user_tier).with_fired(signals)
    return updated.mark_applied(event, window), signals


def new_state(conversation_id: str) -> ConversationState:
    """The state of a conversation nothing is known about yet."""
    return ConversationState(conversation_id=conversation_id)
