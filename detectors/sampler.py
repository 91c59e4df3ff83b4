"""Risk-weighted sampling with a true, stored inclusion probability (docs/architecture.md).

A conversation with signals gets the risk route's probability

    p = min(1, base × max over its signals of (detector weight × risk weight) × tier weight)

The strongest signal decides, not a sum or product of all: one conversation's
signals are correlated (a complaint often comes with a handoff and a downvote),
so adding them up would count one problem several times, and with the max a
new signal can only keep or raise p.

Every conversation, flagged or not, is also in the uniform QA route with
probability p0 (``uniform_qa_rate``). Both routes use ONE hash per
conversation, u = blake2b(salt, conversation_id) / 2^64, uniform on [0, 1):

    sampled  ⇔  u < max(p, p0)

so the stored probability max(p, p0) is exactly the inclusion probability, the
one a Horvitz–Thompson estimate must divide by. (Two independent hashes would
give 1 − (1 − p)(1 − p0) and need two draws to stay consistent; one hash keeps a
single number that is both the decision rule and the truth.) The decision is
monotone: u never changes and max(p, p0) only rises as signals arrive, so a
sampled conversation stays sampled. And {u < p0} is the same uniform p0-sample
of all conversations whatever their signals, so ``reason`` is "uniform_qa" when
u < p0 (the conversation belongs to the unbiased QA sample, even if flagged)
and "signal" when only the risk route admitted it.

Only exogenous signals (traffic, feedback, handoffs) enter p. A detector listed in
``sampler_endogenous_detectors`` (default: ``qa_flag``) fires on a signal that
exists mostly *because* the conversation was sampled: QA reviews the sample. Were
it in the max rule, one Risk verdict would rewrite a uniform sample's π from 0.01
to 1.0 and weight every labelled problem 1 instead of 1/π (a Horvitz–Thompson rate
about 100× too low that moves with how often a version triggers detectors). So
the stored π is the design probability (decided by u and the exogenous signals
alone) and such a signal never changes it, nor ``sampled``.

A QA verdict can also flag a conversation the design did not sample (an external
review, a curator's seed). It still gets a sample row, so it can be labelled and
trained on, with ``reason`` "qa_review" (outside the design): ``sampled`` stays
False and the probability stays the design π, so a Horvitz–Thompson estimate that
counts only ``sampled`` conversations ignores it. :attr:`SampleDecision.captured`
says whether a sample row is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from detectors.config import DetectorSettings
from detectors.state import ConversationState
from loraloop.events import Signal, Tier

HASH_BYTES: Final = 8
"""The conversation hash is a 64-bit integer."""

_HASH_RANGE: Final = float(2 ** (8 * HASH_BYTES))
_SEPARATOR: Final = b"\x1f"

Reason = Literal["signal", "uniform_qa", "qa_review"]

QA_REVIEW: Final[Reason] = "qa_review"
"""The reason of a sample outside the design: an endogenous detector flagged an unsampled
conversation (a QA verdict on a conversation the design did not draw)."""


@dataclass(frozen=True, slots=True)
class SampleDecision:
    """The design decision, its inclusion probability, and why a sample row exists.

    ``sampled`` and ``probability`` are the design (u < π, π from exogenous signals);
    ``reason`` is "uniform_qa" or "signal" for a sampled conversation, "qa_review"
    for an unsampled one that an endogenous detector flagged, None otherwise.
    """

    sampled: bool
    probability: float
    reason: Reason | None

    @property
    def captured(self) -> bool:
        """Whether the conversation gets a sample row (sampled, or reviewed outside the design)."""
        return self.reason is not None


def unit_hash(salt: str, conversation_id: str) -> float:
    """u in [0, 1): blake2b of (salt, conversation_id) as a 64-bit integer over 2^64."""
    digest = hashlib.blake2b(
        salt.encode() + _SEPARATOR + conversation_id.encode(), digest_size=HASH_BYTES
    ).digest()
    return int.from_bytes(digest, "big") / _HASH_RANGE


def signal_probability(
    weights: Mapping[str, float], *, tier: Tier | None, settings: DetectorSettings
) -> float:
    """The risk route's p from each fired detector's highest risk weight; 0 without any.

    ``weights`` are taken as given: :func:`decide` leaves endogenous detectors out first.
    """
    if not weights:
        return 0.0
    strongest = max(
        settings.sampler_detector_weights.of(detector) * risk for detector, risk in weights.items()
    )
    return min(1.0, settings.sampler_base_rate * strongest * settings.tier_weights.of(tier))


def strongest_weights(signals: Iterable[Signal]) -> dict[str, float]:
    """Each detector's highest risk weight among signals."""
    weights: dict[str, float] = {}
    for signal in signals:
        weights[signal.detector] = max(signal.risk_weight, weights.get(signal.detector, 0.0))
    return weights


def _decide(
    conversation_id: str,
    weights: Mapping[str, float],
    tier: Tier | None,
    settings: DetectorSettings,
) -> SampleDecision:
    endogenous = settings.sampler_endogenous_detectors
    exogenous = {d: w for d, w in weights.items() if d not in endogenous}
    p_signal = signal_probability(exogenous, tier=tier, settings=settings)
    probability = max(p_signal, settings.uniform_qa_rate)
    u = unit_hash(settings.sampler_salt, conversation_id)
    if u < settings.uniform_qa_rate:
        return SampleDecision(sampled=True, probability=probability, reason="uniform_qa")
    if u < p_signal:
        return SampleDecision(sampled=True, probability=probability, reason="signal")
    reviewed = len(exogenous) < len(weights)
    return SampleDecision(
        sampled=False, probability=probability, reason=QA_REVIEW if reviewed else None
    )


def decide(
    conversation_id: str,
    signals: Iterable[Signal] = (),
    *,
    tier: Tier | None = None,
    settings: DetectorSettings,
) -> SampleDecision:
    """Sample a conversation given all its signals so far (none: the uniform route only)."""
    return _decide(conversation_id, strongest_weights(signals), tier, settings)


def decide_for_state(state: ConversationState, *, settings: DetectorSettings) -> SampleDecision:
    """Sample a conversation from its detector state (fired detectors and user tier)."""
    return _decide(state.conversation_id, state.fired, state.user_tier, settings)
