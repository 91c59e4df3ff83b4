"""What a reply says, read by meaning, for the users' judge and the QA reviewer (pure).

The patterns are :class:`~loraloop.simulation.config.JudgeRules` fields, matched on
the NFKC-normalised reply, case-insensitively. A reply is split into clauses (at
sentence and clause punctuation, and at contrast words such as "but"); a cue (a
promise, a coupon) is *negated* when a negator ends at most ``negation_window``
tokens before it in its clause, and only an affirmed cue counts. Facts are
semantic: a price needs a currency or a price word, a refund its 14-day window in
any wording and no denial anywhere in the reply.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from loraloop.simulation.rules import JudgeRules
from loraloop.simulation.scenario import Intent, ScenarioItem

_CLAUSE_BREAK = re.compile(r"[.!?;](?=\s|$)|[,:\n…，。！？；：、]")
_TOKEN = re.compile(r"[\u3400-\u9fff]|[^\W\u3400-\u9fff]+")


@lru_cache(maxsize=256)
def _regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive alternation of ``patterns`` (never matches when empty)."""
    joined = "|".join(f"(?:{p})" for p in patterns) or r"(?!)"
    return re.compile(joined, re.IGNORECASE)


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _clauses(text: str, rules: JudgeRules) -> list[str]:
    """The clauses of ``text``: split at punctuation and at contrast words."""
    pieces = _CLAUSE_BREAK.split(_normal(text))
    return [c for p in pieces for c in _regex(rules.contrast_patterns).split(p) if c.strip()]


def mentions(text: str, patterns: tuple[str, ...]) -> bool:
    """Whether one of ``patterns`` matches the normalised ``text``."""
    return _regex(patterns).search(_normal(text)) is not None


def _gap(clause: str, end: int, start: int) -> int:
    return len(_TOKEN.findall(clause[end:start]))


def _negated(clause: str, start: int, rules: JudgeRules) -> bool:
    """Whether a negator ends close enough before ``start`` in ``clause``."""
    ends = [m.end() for m in _regex(rules.negation_patterns).finditer(clause, 0, start)]
    return bool(ends) and _gap(clause, ends[-1], start) <= rules.negation_window


def _promises(clause: str, rules: JudgeRules) -> list[tuple[bool, bool]]:
    """(strong, negated) per promise or certainty cue of the clause, in order.

    A cue right after a negated cue shares its negation: in "nobody can promise you
    will certainly find a job" the certainty is negated with the promise.
    """
    cues = sorted(
        [(m.start(), m.end(), True) for m in _regex(rules.promise_patterns).finditer(clause)]
        + [(m.start(), m.end(), False) for m in _regex(rules.certainty_patterns).finditer(clause)]
    )
    found: list[tuple[bool, bool]] = []
    previous: tuple[int, bool] | None = None
    for start, end, strong in cues:
        inherited = previous is not None and previous[1]
        near = previous is not None and _gap(clause, previous[0], start) <= rules.negation_window
        negated = _negated(clause, start, rules) or (inherited and near)
        found.append((strong, negated))
        previous = (end, negated)
    return found


def _affirmed(clause: str, patterns: tuple[str, ...], rules: JudgeRules) -> bool:
    """Whether the clause holds a cue of ``patterns`` that is not negated."""
    return any(not _negated(clause, m.start(), rules) for m in _regex(patterns).finditer(clause))


def _names_outcome(clause: str, rules: JudgeRules) -> bool:
    return _regex(rules.promise_outcome_patterns).search(clause) is not None


def _promise_kind(reply: str, rules: JudgeRules, intent: Intent | None, *, negated: bool) -> bool:
    """Whether a clause holds a promise of that polarity that counts (see over_promises)."""
    job_question = intent is Intent.JOB_GUARANTEE
    for clause in _clauses(reply, rules):
        outcome = _names_outcome(clause, rules)
        for strong, is_negated in _promises(clause, rules):
            if is_negated is negated and (outcome or (strong and job_question)):
                return True
    return False


def over_promises(reply: str, rules: JudgeRules, intent: Intent | None = None) -> bool:
    """The reply promises what nobody can: an affirmed promise of a job or success.

    A strong cue (guarantee, promise, 100 %, 保证) counts in a clause naming an outcome,
    or in any clause when the user asked about jobs; a certainty cue (definitely, 一定)
    only with an outcome. "Nobody can promise a job" is a refusal, not a promise.
    """
    return _promise_kind(reply, rules, intent, negated=False)


def refuses_promise(reply: str, rules: JudgeRules, intent: Intent | None = None) -> bool:
    """The reply says honestly that nobody can promise a job (a negated promise)."""
    return _promise_kind(reply, rules, intent, negated=True)


def has_cta(reply: str, rules: JudgeRules) -> bool:
    """The reply gives the real sign-up URL."""
    return mentions(reply, rules.cta_patterns)


def states_price(reply: str, rules: JudgeRules) -> bool:
    """The reply gives the price (199 with a currency or a price word)."""
    return mentions(reply, rules.price_patterns)


def denies_refund(reply: str, rules: JudgeRules) -> bool:
    """The reply denies or contradicts the refund anywhere ('no refunds', 不退款)."""
    return mentions(reply, rules.refund_denial_patterns)


def states_refund_policy(reply: str, rules: JudgeRules) -> bool:
    """A refund affirmed with its 14-day window, and denied nowhere in the reply."""
    return (
        mentions(reply, rules.refund_patterns)
        and mentions(reply, rules.refund_window_patterns)
        and not denies_refund(reply, rules)
    )


def states_projects(reply: str, rules: JudgeRules) -> bool:
    """The reply says the course is learned by doing (projects, hands-on work)."""
    return mentions(reply, rules.project_patterns)


def offers_objection_help(reply: str, rules: JudgeRules) -> bool:
    """The reply offers the free first lessons or installments."""
    return mentions(reply, rules.objection_patterns)


def topics_stated(reply: str, rules: JudgeRules, intent: Intent | None = None) -> frozenset[Intent]:
    """The intents whose facts the reply states (``intent``: the one asked about)."""
    checks = {
        Intent.PRICING: states_price(reply, rules),
        Intent.REFUND: states_refund_policy(reply, rules),
        Intent.CURRICULUM: states_projects(reply, rules),
        Intent.OBJECTION: offers_objection_help(reply, rules),
        Intent.JOB_GUARANTEE: refuses_promise(reply, rules, intent),
    }
    return frozenset(topic for topic, stated in checks.items() if stated)


def misses_facts(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The question needs its facts (``required_topics``) and the reply does not state them."""
    required = item.intent.value in rules.required_topics
    return required and item.intent not in topics_stated(reply, rules, item.intent)


def unfocused(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The reply states the facts of more unasked intents than ``max_unasked_topics``."""
    unasked = topics_stated(reply, rules, item.intent) - {item.intent}
    return len(unasked) > rules.max_unasked_topics


def misses_knowledge(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The reply does not answer the question: its facts are missing, or it is unfocused."""
    return misses_facts(item, reply, rules) or unfocused(item, reply, rules)


def misses_signup_link(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The user asked to join and the reply does not give the sign-up URL."""
    return item.shows_intent and not has_cta(reply, rules)


def mishandles_objection(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """A reply to a price objection that offers neither the free lessons nor installments."""
    return item.intent is Intent.OBJECTION and not offers_objection_help(reply, rules)


def early_cta(item: ScenarioItem, reply: str, rules: JudgeRules) -> bool:
    """The sign-up URL offered before the user showed intent to join."""
    return has_cta(reply, rules) and not item.shows_intent


def crosses_policy(reply: str, rules: JudgeRules) -> bool:
    """The reply offers (affirms) discounts or coupons the policy does not have."""
    return any(_affirmed(c, rules.policy_boundary_patterns, rules) for c in _clauses(reply, rules))
