"""A synthetic pool: baseline price answers and two kinds of corrected problems."""

from __future__ import annotations

from datetime import UTC, datetime

from trainer.records import ChatMessage, PoolSample, Tier

PLANS = ["basic", "plus", "pro", "team", "family", "student", "annual", "starter"]
PROBLEM_TYPES = ["wrong_CTA_timing", "over_promise"]
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


def baseline_sample(index: int, tier: Tier) -> PoolSample:
    """A baseline sample: a price question and its factual answer."""
    plan = PLANS[index % len(PLANS)]
    return PoolSample(
        sample_id=f"b{index:03d}",
        status=tier,
        problem_types=[],
        messages=[ChatMessage(role="user", content=f"How much is the {plan} plan {index}?")],
        corrected_response=f"The {plan} plan costs {index + 5} dollars a month.",
        updated_at=WHEN,
    )


def problem_sample(index: int, problem_type: str) -> PoolSample:
    """A problem sample: the corrected reply is the same careful sentence per type."""
    plan = PLANS[index % len(PLANS)]
    reply = {
        "wrong_CTA_timing": "Let me answer your question first, then we can talk about buying.",
        "over_promise": "I cannot promise that, but I can explain what the plan includes.",
    }[problem_type]
    return PoolSample(
        sample_id=f"p{index:03d}",
        status=Tier.PROBLEM,
        problem_types=[problem_type],
        messages=[
            ChatMessage(role="user", content=f"Tell me about {plan} number {index}."),
            ChatMessage(role="assistant", content="Buy now! It fixes everything, guaranteed!"),
        ],
        corrected_response=reply,
        first_seen_version="model_v1",
        updated_at=WHEN,
    )


def make_pool(baselines: int = 24, problems: int = 12) -> list[PoolSample]:
    """A pool with every baseline tier and two problem types."""
    tiers = [Tier.CORE_BASELINE, Tier.SECONDARY_BASELINE, Tier.CANDIDATE_BASELINE]
    pool = [baseline_sample(i, tiers[i % 3]) for i in range(baselines)]
    pool += [problem_sample(i, PROBLEM_TYPES[i % 2]) for i in range(problems)]
    return pool
