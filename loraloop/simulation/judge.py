"""How a simulated user reacts to the text the served model actually generated (pure).

Rules, first match wins (docs/demo.md):

1. the reply over-promises → a ``complaint`` on that reply;
2. a reply that misses the facts its intent needs (the 14-day refund policy, the
   price, what the course teaches) → the user asks again; if the second reply misses
   them too (or over-promises), the user demands a human (handoff) and the human
   agent answers with the reference answer;
3. the sign-up link before the user showed intent → ``thumbs_down``;
4. a price objection answered without free lessons or installments → ``thumbs_down``;
5. the link when the user asked to join → a ``cta_click``, converting with a probability;
6. otherwise a ``thumbs_up`` with a probability.

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
    misses_knowledge,
    over_promises,
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
    if over_promises(reply, rules):
        return Reaction("over_promise", feedback=COMPLAINT)
    if misses_knowledge(item, reply, rules):
        return Reaction("knowledge_missing", ask_again=True)
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
    """After asking again: the user gives up when the facts are still missing."""
    return misses_knowledge(item, second_reply, settings.rules) or over_promises(
        second_reply, settings.rules
    )
