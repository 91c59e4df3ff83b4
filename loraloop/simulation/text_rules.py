"""Lexicon checks shared by the users' judge and the QA reviewer (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from loraloop.simulation.config import JudgeRules
from loraloop.simulation.scenario import Intent, ScenarioItem


def contains_any(text: str, terms: Iterable[str]) -> bool:
    """Whether ``text`` contains one of ``terms`` (case-insensitive substring)."""
    folded = text.casefold()
    return any(term.casefold() in folded for term in terms)


def has_cta(reply: str, rules: JudgeRules) -> bool:
    """The reply offers the sign-up link."""
    return contains_any(reply, rules.cta_terms)


def over_promises(reply: str, rules: JudgeRules) -> bool:
    """The reply promises what nobody can ('guarantee', '保证', '100%')."""
    return contains_any(reply, rules.over_promise_terms)


def misses_knowledge(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """A reply that misses the facts its intent needs (the 14-day refund policy, the price)."""
    facts = rules.required_facts.get(item.intent.value)
    return bool(facts) and not contains_any(reply, facts or ())


def misses_signup_link(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The user asked to join and the reply does not give the sign-up link."""
    return item.shows_intent and not has_cta(reply, rules)


def mishandles_objection(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """A reply to a price objection that offers neither the free lessons nor installments."""
    return item.intent is Intent.OBJECTION and not contains_any(reply, rules.objection_terms)


def early_cta(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The sign-up link offered before the user showed intent to join."""
    return has_cta(reply, rules) and not item.shows_intent


def crosses_policy(reply: str, rules: JudgeRules) -> bool:
    """The reply offers discounts or coupons the policy does not have."""
    return contains_any(reply, rules.policy_boundary_terms)
