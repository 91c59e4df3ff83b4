"""repeated_followup: the user asks the same thing again after the assistant answered.

A user turn is a repeat when its fingerprint (character n-grams, see
:mod:`detectors.text`) is a near-duplicate (Dice ≥ ``similarity_threshold``) of
an earlier remembered user turn with an assistant turn between them; two user
messages in a row ("hello?" "hello??") are not a repeat, the bot never answered.
The detector fires when the conversation has ``repeat_min_turns`` (N) repeat
turns: the first ask does not count, so with N = 3 the user asked four times.
Repeats of different questions add up: a user who keeps re-asking is the signal.
Turns shorter than ``min_chars`` / ``cjk_min_chars`` are not fingerprinted, so
"ok" or "好的" after every answer is not a repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.config import DetectorSettings
from detectors.signal import Detector, clip, make_signal, should_fire
from detectors.state import ConversationState
from detectors.text import is_cjk, shingles
from loraloop.events import Signal, Turn


@dataclass(frozen=True, slots=True)
class RepeatMatch:
    """The earlier user turn a new one repeats, and how similar they are."""

    matched_turn_index: int
    similarity: float


def fingerprint(normalized: str, settings: DetectorSettings) -> frozenset[int] | None:
    """The shingles of a normalized user turn, or None when it is too short to compare."""
    head = normalized[: settings.max_fingerprint_chars]
    cjk = is_cjk(head)
    if len(head) < (settings.cjk_min_chars if cjk else settings.min_chars):
        return None
    return shingles(head, settings.cjk_ngram_size if cjk else settings.ngram_size)


def find_repeat(
    state: ConversationState,
    turn_index: int,
    shingle_set: frozenset[int],
    *,
    settings: DetectorSettings,
) -> RepeatMatch | None:
    """The most similar earlier user turn answered by the assistant since, if near-duplicate.

    Dice inlined (this loop runs on every user turn): set sizes alone bound the
    similarity by 2·min/(sum), which skips hopeless intersections.
    """
    answered_at = state.last_assistant_before(turn_index)
    if answered_at is None:
        return None
    threshold = settings.similarity_threshold
    size = len(shingle_set)
    best: RepeatMatch | None = None
    for earlier in state.prints:
        other = len(earlier.shingles)
        total = size + other
        if earlier.turn_index >= answered_at or 2 * min(size, other) < threshold * total:
            continue
        similarity = 2 * len(shingle_set & earlier.shingles) / total
        if similarity >= threshold and (best is None or similarity > best.similarity):
            best = RepeatMatch(earlier.turn_index, similarity)
    return best


def detect(
    state: ConversationState,
    turn: Turn,
    match: RepeatMatch | None,
    *,
    settings: DetectorSettings,
) -> Signal | None:
    """A signal when this repeat is the N-th of the conversation (once per conversation)."""
    if match is None or state.repeat_turns + 1 < settings.repeat_min_turns:
        return None
    weight = settings.risk_weights.repeated_followup
    if not should_fire(state.fired, Detector.REPEATED_FOLLOWUP, weight):
        return None
    return make_signal(
        Detector.REPEATED_FOLLOWUP,
        conversation_id=turn.conversation_id,
        user_id=turn.user_id,
        model_version=state.model_version,
        event_id=turn.event_id,
        turn_index=turn.turn_index,
        risk_weight=weight,
        evidence={
            "turn_index": turn.turn_index,
            "text": clip(turn.text, settings.evidence_max_chars),
            "matched_turn_index": match.matched_turn_index,
            "similarity": match.similarity,
            "repeat_turns": state.repeat_turns + 1,
        },
        ts=turn.ts,
    )
