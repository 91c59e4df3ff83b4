"""The risk-weighted sampler: deterministic, monotone, and its stored probability is true.

The stored π is the design's: exogenous signals raise it by the max rule; a QA verdict
(an endogenous signal: QA reviews the sample) never changes it (issue 14, item 2).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from detectors import ConversationState, DetectorSettings, decide, decide_for_state
from detectors.sampler import signal_probability, unit_hash
from detectors.signal import signal_id
from loraloop.events import Signal, Tier

N_IDS = 100_000
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def sig(detector: str, weight: float, conversation_id: str = "c") -> Signal:
    return Signal(
        signal_id=signal_id(detector, conversation_id, 1.0),
        detector=detector,
        conversation_id=conversation_id,
        user_id="u",
        risk_weight=weight,
        ts=T0,
    )


def tolerance(p: float, n: int = N_IDS) -> float:
    """Four standard errors of a Bernoulli(p) rate over n draws."""
    return 4 * math.sqrt(p * (1 - p) / n)


def sampled_rate(signals: list[Signal], settings: DetectorSettings, tier: Tier | None) -> float:
    decisions = [decide(f"conv-{i}", signals, tier=tier, settings=settings) for i in range(N_IDS)]
    return sum(d.sampled for d in decisions) / N_IDS


def test_unit_hash_is_deterministic_and_salted() -> None:
    u = unit_hash("salt", "conv-1")

    assert 0 <= u < 1
    assert u == unit_hash("salt", "conv-1")
    assert u != unit_hash("other", "conv-1")
    assert u != unit_hash("salt", "conv-2")


def test_decision_is_deterministic(settings: DetectorSettings) -> None:
    signals = [sig("complaint", 2.0)]

    first = [decide(f"c{i}", signals, settings=settings) for i in range(200)]
    again = [decide(f"c{i}", signals, settings=settings) for i in range(200)]

    assert first == again
    assert any(d.sampled for d in first)
    assert not all(d.sampled for d in first)


def test_strongest_signal_decides(settings: DetectorSettings) -> None:
    weights = settings.sampler_detector_weights
    base = settings.sampler_base_rate

    p = signal_probability(
        {"repeated_followup": 1.0, "complaint": 2.0}, tier=None, settings=settings
    )

    assert p == pytest.approx(base * max(weights.repeated_followup * 1.0, weights.complaint * 2.0))


def test_tier_weight_scales_and_probability_is_capped(settings: DetectorSettings) -> None:
    weights = {"repeated_followup": 1.0}

    standard = signal_probability(weights, tier=Tier.STANDARD, settings=settings)
    vip = signal_probability(weights, tier=Tier.VIP, settings=settings)
    capped = signal_probability({"qa_flag": 9.0}, tier=Tier.VIP, settings=settings)

    assert vip == pytest.approx(standard * settings.tier_weights.vip)
    assert signal_probability(weights, tier=None, settings=settings) == standard
    assert capped == 1.0
    assert signal_probability({}, tier=Tier.VIP, settings=settings) == 0.0


@pytest.mark.parametrize(
    ("base", "p0", "expected"),
    [
        (0.3, 0.1, 0.3),  # risk route dominates: max, not 1 - 0.7 * 0.9 = 0.37
        (0.05, 0.1, 0.1),  # uniform route dominates
        (0.2, 0.0, 0.2),  # no uniform QA at all
    ],
)
def test_stored_probability_is_the_empirical_inclusion_rate(
    settings: DetectorSettings, base: float, p0: float, expected: float
) -> None:
    chosen = settings.model_copy(update={"sampler_base_rate": base, "uniform_qa_rate": p0})
    signals = [sig("repeated_followup", 1.0)]

    rate = sampled_rate(signals, chosen, Tier.STANDARD)
    stored = decide("any", signals, tier=Tier.STANDARD, settings=chosen).probability

    assert stored == pytest.approx(expected)
    assert abs(rate - stored) < tolerance(stored)


def test_conversations_without_signals_get_the_uniform_rate(settings: DetectorSettings) -> None:
    p0 = settings.uniform_qa_rate
    decisions = [decide(f"conv-{i}", settings=settings) for i in range(N_IDS)]
    rate = sum(d.sampled for d in decisions) / N_IDS

    assert {d.probability for d in decisions} == {p0}
    assert {d.reason for d in decisions if d.sampled} == {"uniform_qa"}
    assert abs(rate - p0) < tolerance(p0)


def test_uniform_qa_subsample_is_the_same_whatever_the_signals(
    settings: DetectorSettings,
) -> None:
    ids = [f"conv-{i}" for i in range(20_000)]
    flagged = [decide(c, [sig("complaint", 9.0)], settings=settings) for c in ids]
    plain = [decide(c, settings=settings) for c in ids]

    assert all(d.sampled for d in flagged)
    assert [d.reason == "uniform_qa" for d in flagged] == [d.sampled for d in plain]


def test_decision_is_monotone_as_signals_arrive(settings: DetectorSettings) -> None:
    stages = [
        [],
        [sig("repeated_followup", 1.0)],
        [sig("repeated_followup", 1.0), sig("complaint", 2.0)],
        [sig("repeated_followup", 1.0), sig("complaint", 2.0), sig("qa_flag", 4.5)],
    ]
    ids = [f"conv-{i}" for i in range(20_000)]
    previous: set[str] = set()
    previous_p = 0.0
    for signals in stages:
        decisions = {c: decide(c, signals, tier=Tier.HIGH_VALUE, settings=settings) for c in ids}
        sampled = {c for c, d in decisions.items() if d.sampled}
        p = decisions[ids[0]].probability

        assert previous <= sampled
        assert p >= previous_p
        previous, previous_p = sampled, p
    assert len(previous) > 0.5 * len(ids)


def test_decide_for_state_uses_fired_weights_and_tier(settings: DetectorSettings) -> None:
    state = ConversationState(
        conversation_id="conv-9", user_tier=Tier.VIP, fired={"complaint": 2.0, "qa_flag": 3.0}
    )
    signals = [sig("complaint", 2.0, "conv-9"), sig("qa_flag", 3.0, "conv-9")]

    assert decide_for_state(state, settings=settings) == decide(
        "conv-9", signals, tier=Tier.VIP, settings=settings
    )


def test_changing_the_salt_draws_another_sample(settings: DetectorSettings) -> None:
    signals = [sig("repeated_followup", 1.0)]
    other = settings.model_copy(update={"sampler_salt": "another"})
    ids = [f"conv-{i}" for i in range(2_000)]

    first = {c for c in ids if decide(c, signals, settings=settings).sampled}
    second = {c for c in ids if decide(c, signals, settings=other).sampled}

    assert first != second


def first_id(settings: DetectorSettings, *, below: float, at_least: float = 0.0) -> str:
    """The first ``conv-<i>`` whose hash u satisfies at_least <= u < below."""
    for i in range(1_000_000):
        cid = f"conv-{i}"
        if at_least <= unit_hash(settings.sampler_salt, cid) < below:
            return cid
    msg = "no conversation id in range"
    raise AssertionError(msg)


def test_a_qa_verdict_on_a_uniform_sample_keeps_its_probability(
    settings: DetectorSettings,
) -> None:
    """The bug: one Risk verdict rewrote a uniform sample's π from 0.01 to 1.0."""
    p0 = settings.uniform_qa_rate
    cid = first_id(settings, below=p0)

    before = decide(cid, settings=settings)
    after = decide(cid, [sig("qa_flag", 9.0, cid)], settings=settings)

    assert before == after
    assert after.sampled
    assert after.probability == pytest.approx(p0)
    assert after.reason == "uniform_qa"


def test_qa_verdicts_never_enter_the_inclusion_probability(settings: DetectorSettings) -> None:
    ids = [f"conv-{i}" for i in range(20_000)]
    for exogenous in ([], [sig("complaint", 2.0)], [sig("repeated_followup", 1.0)]):
        plain = [decide(c, exogenous, tier=Tier.VIP, settings=settings) for c in ids]
        reviewed = [
            decide(c, [*exogenous, sig("qa_flag", 9.0)], tier=Tier.VIP, settings=settings)
            for c in ids
        ]

        assert [d.probability for d in reviewed] == [d.probability for d in plain]
        assert [d.sampled for d in reviewed] == [d.sampled for d in plain]
        assert [d.reason for d in reviewed if d.sampled] == [d.reason for d in plain if d.sampled]


def test_an_unsampled_conversation_flagged_by_qa_gets_a_review_sample_outside_the_design(
    settings: DetectorSettings,
) -> None:
    p0 = settings.uniform_qa_rate
    cid = first_id(settings, below=1.0, at_least=0.5)

    unflagged = decide(cid, settings=settings)
    reviewed = decide(cid, [sig("qa_flag", 4.5, cid)], settings=settings)

    assert (unflagged.sampled, unflagged.captured, unflagged.reason) == (False, False, None)
    assert not reviewed.sampled  # conversations.sampled: Horvitz–Thompson ignores it
    assert reviewed.captured  # but it is a sample to label and train on
    assert reviewed.reason == "qa_review"
    assert reviewed.probability == pytest.approx(p0)  # the design π, not 1.0


def test_exogenous_signals_keep_the_max_rule_next_to_a_qa_verdict(
    settings: DetectorSettings,
) -> None:
    signals = [sig("repeated_followup", 1.0), sig("complaint", 2.0), sig("qa_flag", 9.0)]
    expected = signal_probability(
        {"repeated_followup": 1.0, "complaint": 2.0}, tier=Tier.STANDARD, settings=settings
    )

    decision = decide("conv-7", signals, tier=Tier.STANDARD, settings=settings)

    assert expected == pytest.approx(settings.sampler_base_rate * 1.5 * 2.0)
    assert decision.probability == pytest.approx(max(expected, settings.uniform_qa_rate))


def test_an_exogenous_signal_after_a_review_can_bring_the_conversation_into_the_design(
    settings: DetectorSettings,
) -> None:
    p = settings.sampler_base_rate * settings.sampler_detector_weights.complaint * 2.0
    cid = first_id(settings, below=p, at_least=settings.uniform_qa_rate)

    reviewed = decide(cid, [sig("qa_flag", 4.5, cid)], settings=settings)
    then = decide(cid, [sig("qa_flag", 4.5, cid), sig("complaint", 2.0, cid)], settings=settings)

    assert (reviewed.sampled, reviewed.reason) == (False, "qa_review")
    assert (then.sampled, then.reason) == (True, "signal")
    assert then.probability == pytest.approx(p)


def test_without_endogenous_detectors_qa_flag_raises_the_probability_again(
    settings: DetectorSettings,
) -> None:
    every = settings.model_copy(update={"sampler_endogenous_detectors": frozenset()})
    cid = first_id(settings, below=1.0, at_least=0.5)

    decision = decide(cid, [sig("qa_flag", 9.0, cid)], settings=every)

    assert decision.sampled
    assert decision.probability == 1.0
    assert decision.reason == "signal"
