"""How a simulated user reacts to the text the served model actually generated (pure).

Rules, first match wins (docs/demo.md):

1. the reply over-promises (an affirmed, not negated, promise of a job or success)
   → a ``complaint`` on that reply;
2. a reply that misses the facts its intent needs (the price, the refund with its
   14-day window, the projects, that nobody can promise a job) → the user asks again;
3. a reply stating the facts of two or more intents the user did not ask about
   (keyword stuffing) is unfocused → the user asks again; if the second reply still
   misses the facts, is unfocused or over-promises, the user demands a human (handoff)
   and the human agent answers with the reference answer;
4. the sign-up URL before the user showed intent → ``thumbs_down``;
5. a price objection answered without free lessons or installments → ``thumbs_down``;
6. the URL when the user asked to join → a ``cta_click``, converting with a probability;
7. otherwise a ``thumbs_up`` with a probability.

No version's outcome is fixed in advance: only the reply text decides.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from loraloop.simulation.config import SimulationSettings
from loraloop.simulation.scenario import ScenarioItem
from loraloop.simulation.text_rules import (
    early_cta,
    has_cta,
    mishandles_objection,
    misses_facts,
    misses_knowledge,
    over_promises,
    unfocused,
)

COMPLAINT = "complaint"
THUMBS_UP = "thumbs_up"
THUMBS_DOWN = "thumbs_down"


@dataclass(frozen=True, slots=True)
class Reaction:
    """What the user does after the first reply."""

    rule: str
    feedback: str | None = None
    ask_again: bool = False
    cta_click: bool = False
    conversion: bool = False


def judge_reply(
    item: ScenarioItem, reply: str, settings: SimulationSettings, rng: random.Random
) -> Reaction:
    """The user's reaction to ``reply`` (the first assistant turn)."""
    rules = settings.rules
    if over_promises(reply, rules, item.intent):
        return Reaction("over_promise", feedback=COMPLAINT)
    if misses_facts(item, reply, rules):
        return Reaction("knowledge_missing", ask_again=True)
    if unfocused(item, reply, rules):
        return Reaction("unfocused", ask_again=True)
    if early_cta(item, reply, rules):
        return Reaction("early_cta", feedback=THUMBS_DOWN)
    if mishandles_objection(item, reply, rules):
        return Reaction("objection_missed", feedback=THUMBS_DOWN)
    if has_cta(reply, rules):
        converted = rng.random() < settings.conversion_probability
        return Reaction("well_timed_cta", cta_click=True, conversion=converted)
    if rng.random() < settings.thumbs_up_probability:
        return Reaction("satisfied", feedback=THUMBS_UP)
    return Reaction("silent")


def demands_human(item: ScenarioItem, second_reply: str, settings: SimulationSettings) -> bool:
    """After asking again: the user gives up when the answer is still missing or wrong."""
    return misses_knowledge(item, second_reply, settings.rules) or over_promises(
        second_reply, settings.rules, item.intent
    )
