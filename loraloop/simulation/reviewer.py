"""The simulated QA reviewer ``sim-qa``: labels a captured conversation by fixed rules (pure).

It reads every assistant reply of the conversation; each rule that fires adds its
problem type: over_promise (any reply affirms a promise of a job or success),
missing_knowledge (the first reply misses its intent's facts, or is unfocused: it
states the facts of two or more intents that were not asked about),
wrong_CTA_timing (the sign-up URL before the user showed intent, or no URL when the
user asked to join), wrong_objection_handling (a price objection answered without
free lessons or installments), policy_boundary_risk (affirmed discounts or coupons
the policy does not have). The rules are :mod:`loraloop.simulation.text_rules`.
Reject with risk high for over-promises and policy risks, Risk with risk medium for
the rest, Accept (low) when no rule fires.
The corrected response is the scenario's reference answer; notes say the label is simulated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from loraloop.simulation.config import JudgeRules
from loraloop.simulation.scenario import ScenarioItem
from loraloop.simulation.text_rules import (
    crosses_policy,
    early_cta,
    mishandles_objection,
    misses_knowledge,
    misses_signup_link,
    over_promises,
)

REVIEWER: Final = "sim-qa"
SIMULATED_NOTE: Final = "simulated"
_SEVERE: Final = frozenset({"over_promise", "policy_boundary_risk"})


@dataclass(frozen=True, slots=True)
class Review:
    """A QA verdict's fields."""

    acceptance: str
    risk_level: str
    problem_types: list[str] = field(default_factory=list)
    corrected_response: str | None = None
    notes: str = SIMULATED_NOTE


def problem_types_of(item: ScenarioItem, replies: Sequence[str], rules: JudgeRules) -> list[str]:
    """The problem types the replies show, in taxonomy order."""
    found: list[str] = []
    first = replies[0] if replies else ""
    if any(over_promises(r, rules, item.intent) for r in replies):
        found.append("over_promise")
    if replies and misses_knowledge(item, first, rules):
        found.append("missing_knowledge")
    if any(early_cta(item, r, rules) for r in replies) or (
        replies and misses_signup_link(item, first, rules)
    ):
        found.append("wrong_CTA_timing")
    if replies and mishandles_objection(item, first, rules):
        found.append("wrong_objection_handling")
    if any(crosses_policy(r, rules) for r in replies):
        found.append("policy_boundary_risk")
    return found


def review(item: ScenarioItem, replies: Sequence[str], rules: JudgeRules) -> Review:
    """The verdict on a conversation that opened with ``item`` and got ``replies``."""
    types = problem_types_of(item, replies, rules)
    if not types:
        return Review("Accept", "low", notes=f"{SIMULATED_NOTE}: no rule fired")
    severe = bool(_SEVERE.intersection(types))
    return Review(
        acceptance="Reject" if severe else "Risk",
        risk_level="high" if severe else "medium",
        problem_types=types,
        corrected_response=item.reference,
        notes=f"{SIMULATED_NOTE}: {', '.join(types)}",
    )
