"""Detector names, deterministic signal ids, and the once-per-conversation firing rule.

Each detector fires at most once per conversation, and again only when a later
trigger carries a strictly higher risk weight (a QA verdict raised from Risk to
Reject): the sampler keeps the highest weight, and the number of signals per
conversation stays bounded by the number of distinct weights.

So (detector, conversation_id, risk weight) names a signal, and its id is a hash
of exactly that, not of the triggering event: a replay yields the same id even
when the events of a conversation's topics interleave differently the second time
(Kafka orders a partition, not several topics), e.g. when a complaint turn and a
complaint feedback swap places after a crash; the warehouse keeps one row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from loraloop.events import Signal

SIGNAL_ID_HEX_CHARS: Final = 32
"""Length of a signal id: 128 bits of sha256, collision-free at any realistic volume."""

_SEPARATOR: Final = "\x1f"
"""Unit separator between hashed fields; never part of an id."""


class Detector(StrEnum):
    """The detectors, by the name their signals carry."""

    REPEATED_FOLLOWUP = "repeated_followup"
    COMPLAINT = "complaint"
    SUDDEN_ESCALATION = "sudden_escalation"
    HIGH_VALUE_DOWNVOTE = "high_value_downvote"
    QA_FLAG = "qa_flag"


def signal_id(detector: str, conversation_id: str, risk_weight: float) -> str:
    """sha256 of (detector, conversation, risk weight), truncated; stable across replays."""
    key = _SEPARATOR.join((detector, conversation_id, repr(float(risk_weight)))).encode()
    return hashlib.sha256(key).hexdigest()[:SIGNAL_ID_HEX_CHARS]


def should_fire(fired: Mapping[str, float], detector: str, risk_weight: float) -> bool:
    """True when the detector has not fired yet, or fired with a lower risk weight."""
    previous = fired.get(detector)
    return previous is None or risk_weight > previous


def clip(text: str | None, max_chars: int) -> str | None:
    """A text cut to ``max_chars`` for evidence (None stays None)."""
    return None if text is None else text[:max_chars]


def make_signal(
    detector: Detector,
    *,
    conversation_id: str,
    user_id: str,
    model_version: str | None,
    event_id: str,
    turn_index: int | None,
    risk_weight: float,
    evidence: dict[str, Any],
    ts: datetime,
) -> Signal:
    """A signal whose id is derived from (detector, conversation, risk weight)."""
    return Signal(
        signal_id=signal_id(detector.value, conversation_id, risk_weight),
        detector=detector.value,
        conversation_id=conversation_id,
        user_id=user_id,
        model_version=model_version,
        turn_index=turn_index,
        risk_weight=risk_weight,
        evidence={"event_id": event_id, **evidence},
        ts=ts,
    )
