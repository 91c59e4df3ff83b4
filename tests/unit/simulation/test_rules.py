"""The demo's judge rules and the simulated QA reviewer, in English and Chinese."""

from __future__ import annotations

import random

import pytest

from loraloop.simulation import Intent, SimulationSettings, judge_reply, review, scenario_items
from loraloop.simulation.judge import demands_human
from loraloop.simulation.scenario import SIGNUP_URL, ScenarioItem

SETTINGS = SimulationSettings()


def item(intent: Intent, lang: str, family: str = "a") -> ScenarioItem:
    return next(
        i
        for i in scenario_items(1)
        if i.intent is intent and i.lang == lang and i.family.endswith(f"-{family}")
    )


def rng() -> random.Random:
    return random.Random(0)  # noqa: S311


@pytest.mark.parametrize(
    ("lang", "reply"),
    [("en", "We guarantee you a job."), ("zh", "我们保证你能找到工作。"), ("en", "100% success")],
)
def test_over_promise_draws_a_complaint_and_a_reject(lang: str, reply: str) -> None:
    question = item(Intent.JOB_GUARANTEE, lang)
    assert judge_reply(question, reply, SETTINGS, rng()).feedback == "complaint"
    verdict = review(question, [reply], SETTINGS.rules)
    assert verdict.acceptance == "Reject"
    assert "over_promise" in verdict.problem_types
    assert verdict.corrected_response == question.reference
    assert verdict.notes.startswith("simulated")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_refund_reply_without_policy_draws_follow_up_then_handoff(lang: str) -> None:
    question = item(Intent.REFUND, lang)
    reaction = judge_reply(question, "Please contact us.", SETTINGS, rng())
    assert reaction.ask_again
    assert reaction.rule == "knowledge_missing"
    assert demands_human(question, "Sorry, I do not know.", SETTINGS)
    assert review(question, ["Please contact us."], SETTINGS.rules).problem_types == [
        "missing_knowledge"
    ]


@pytest.mark.parametrize(
    ("lang", "reply"), [("en", "Refunds are possible within 14 days."), ("zh", "14 天内可以退款。")]
)
def test_refund_reply_with_policy_is_accepted(lang: str, reply: str) -> None:
    question = item(Intent.REFUND, lang)
    assert not judge_reply(question, reply, SETTINGS, rng()).ask_again
    assert not demands_human(question, reply, SETTINGS)
    assert review(question, [reply], SETTINGS.rules).acceptance == "Accept"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_early_link_draws_thumbs_down_and_well_timed_link_a_click(lang: str) -> None:
    reply = f"Sign up here: {SIGNUP_URL}"
    early = item(Intent.CURRICULUM, lang)
    assert judge_reply(early, f"Each module has a project. {reply}", SETTINGS, rng()).feedback == (
        "thumbs_down"
    )
    assert "wrong_CTA_timing" in review(early, [reply], SETTINGS.rules).problem_types
    ready = item(Intent.SIGNUP_READY, lang)
    assert judge_reply(ready, reply, SETTINGS, rng()).cta_click
    assert review(ready, [reply], SETTINGS.rules).acceptance == "Accept"


def test_no_link_when_the_user_wants_to_join_is_a_cta_problem() -> None:
    ready = item(Intent.SIGNUP_READY, "zh")
    verdict = review(ready, ["好的。"], SETTINGS.rules)
    assert verdict.problem_types == ["wrong_CTA_timing"]
    assert verdict.acceptance == "Risk"


@pytest.mark.parametrize(
    ("lang", "bad", "good"),
    [
        ("en", "It is worth it.", "The first two lessons are free."),
        ("en", "Feel free to ask.", "You can pay in 3 installments."),
        ("zh", "很值得。", "前两课可以免费试听。"),
    ],
)
def test_objection_needs_free_lessons_or_installments(lang: str, bad: str, good: str) -> None:
    question = item(Intent.OBJECTION, lang)
    assert judge_reply(question, bad, SETTINGS, rng()).feedback == "thumbs_down"
    assert review(question, [bad], SETTINGS.rules).problem_types == ["wrong_objection_handling"]
    assert review(question, [good], SETTINGS.rules).acceptance == "Accept"


@pytest.mark.parametrize(
    ("reply", "risky"),
    [
        ("It costs $199, and here is a coupon.", True),
        ("The course costs $199. Use discount code SAVE20.", True),
        ("It costs $199, 20% off this week.", True),
        ("It costs $199; we do not offer coupons.", False),
        ("课程 199 美元，我们没有优惠码。", False),
    ],
)
def test_discount_offer_is_a_policy_risk(reply: str, risky: bool) -> None:
    question = item(Intent.PRICING, "en")
    verdict = review(question, [reply], SETTINGS.rules)
    assert ("policy_boundary_risk" in verdict.problem_types) is risky
    assert (verdict.acceptance == "Reject") is risky


def test_rules_are_configurable() -> None:
    rules = SETTINGS.rules.model_copy(update={"promise_patterns": (r"\bsurely\b",)})
    settings = SETTINGS.model_copy(update={"rules": rules})
    question = item(Intent.JOB_GUARANTEE, "en")
    assert judge_reply(question, "You will surely get a job.", settings, rng()).feedback == (
        "complaint"
    )
    assert judge_reply(question, "We guarantee it.", settings, rng()).feedback != "complaint"


def test_a_pattern_that_is_not_a_regex_is_refused() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        SETTINGS.rules.model_validate({"price_patterns": ["(199"]})


@pytest.mark.parametrize("question", scenario_items(), ids=lambda i: i.item_id)
def test_reference_answers_break_no_rule(question: ScenarioItem) -> None:
    # A version that learned the human agent's answer must be judged a good one.
    reply = question.reference
    assert review(question, [reply], SETTINGS.rules).acceptance == "Accept"
    reaction = judge_reply(question, reply, SETTINGS, rng())
    assert reaction.rule in {"satisfied", "silent", "well_timed_cta"}
    assert not demands_human(question, reply, SETTINGS)
