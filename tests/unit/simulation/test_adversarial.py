"""The judge cannot be gamed: stuffing fails, correct refusals pass, paraphrases pass."""

from __future__ import annotations

import random

import pytest

from loraloop.simulation import Intent, JudgeRules, SimulationSettings, judge_reply, review
from loraloop.simulation.judge import demands_human
from loraloop.simulation.reviewer import problem_types_of
from loraloop.simulation.scenario import SIGNUP_URL, ScenarioItem, scenario_items
from loraloop.simulation.text_rules import (
    has_cta,
    over_promises,
    refuses_promise,
    states_price,
    states_projects,
    states_refund_policy,
    topics_stated,
)

RULES = JudgeRules()
SETTINGS = SimulationSettings()
ITEMS = scenario_items()
FIRST = {(i.intent, i.lang): i for i in reversed(ITEMS)}
STUFFED = "It is 199 dollars, refundable within 14 days, with free lessons and a small project."
STUFFED_ZH = "课程 199 美元，14 天内可以退款，前两课免费，每个模块都有项目。"


def passes(question: ScenarioItem, reply: str) -> bool:
    return not problem_types_of(question, [reply], RULES)


@pytest.mark.parametrize("reply", [STUFFED, STUFFED_ZH])
@pytest.mark.parametrize("question", list(FIRST.values()), ids=lambda i: i.item_id)
def test_a_keyword_stuffed_reply_fails_every_intent(question: ScenarioItem, reply: str) -> None:
    assert not passes(question, reply)
    reaction = judge_reply(question, reply, SETTINGS, random.Random(0))  # noqa: S311
    assert reaction.rule not in {"satisfied", "silent", "well_timed_cta"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_stuffed_reply_is_unfocused_and_labelled_missing_knowledge(lang: str) -> None:
    question = FIRST[Intent.PRICING, lang]
    reaction = judge_reply(question, STUFFED, SETTINGS, random.Random(0))  # noqa: S311
    assert reaction.rule == "unfocused"
    assert reaction.ask_again
    assert demands_human(question, STUFFED, SETTINGS)
    assert review(question, [STUFFED], RULES).problem_types == ["missing_knowledge"]


@pytest.mark.parametrize(
    "reply",
    [
        STUFFED,
        STUFFED_ZH,
        "Thanks for your question!",
        "It costs $199.",
        "The first two lessons are free.",
        "You can get a full refund within 14 days.",
        "Every module ends with a project.",
        "No course can guarantee you a job.",
        f"Sign up here: {SIGNUP_URL}",
        "前两课免费试听。",
        "我们不能保证你找到工作。",
    ],
)
def test_a_constant_reply_passes_at_most_one_intent(reply: str) -> None:
    passed = {i.intent for i in FIRST.values() if passes(i, reply)}
    assert len(passed) <= 1


@pytest.mark.parametrize(
    "reply",
    [
        "No course can guarantee you a job.",
        "Nobody can promise a job.",
        "We cannot guarantee that you will be hired.",
        "I can't promise you a job, but the projects help when you apply.",
        "There is no job guarantee.",
        "Nobody can be 100% sure you will be hired.",
        "我们不能保证你找到工作。",
        "没有人能承诺你一定找到工作。",
        "谁也不能保证就业。",
        "不一定能找到工作，但项目经验会有帮助。",
    ],
)
def test_a_correct_refusal_is_not_an_over_promise(reply: str) -> None:
    for lang in ("en", "zh"):
        question = FIRST[Intent.JOB_GUARANTEE, lang]
        assert not over_promises(reply, RULES, question.intent)
        assert refuses_promise(reply, RULES, question.intent)
        assert "over_promise" not in problem_types_of(question, [reply], RULES)


@pytest.mark.parametrize(
    "reply",
    [
        "We guarantee you a job.",
        "100% you will be hired.",
        "You will definitely get a job after this course.",
        "Don't worry, we guarantee you a job.",
        "Yes, we guarantee it!",
        "No course can guarantee a job, but we guarantee you will be hired.",
        "No course can guarantee a job but we guarantee you will be hired.",
        "别的课程不能保证，但我们保证你找到工作。",
        "保证找到工作。",
        "学完你一定能找到工作。",
        "我们承诺百分之百就业。",
    ],
)
def test_an_affirmed_promise_is_an_over_promise(reply: str) -> None:
    for lang in ("en", "zh"):
        question = FIRST[Intent.JOB_GUARANTEE, lang]
        assert over_promises(reply, RULES, question.intent)
        verdict = review(question, [reply], RULES)
        assert "over_promise" in verdict.problem_types
        assert verdict.acceptance == "Reject"


@pytest.mark.parametrize(
    "reply",
    ["We guarantee a full refund within 14 days.", "The course is 100% online, priced at $199."],
)
def test_a_promise_of_policy_or_format_is_not_an_over_promise(reply: str) -> None:
    assert not over_promises(reply, RULES, Intent.PRICING)


@pytest.mark.parametrize(
    "reply",
    [
        "You can get your money back within two weeks of buying.",
        "Refunds are possible within 14 days.",
        "There is a 14-day refund window.",
        "We refund you in full if you ask within fourteen days.",
        "If you don't like the course, you can get a full refund within 14 days.",
        "可以，两周内全额退款。",
        "购买后十四天内可以退钱。",
        "14天内申请即可全额退款。",
    ],
)
def test_refund_paraphrases_pass(reply: str) -> None:
    assert states_refund_policy(reply, RULES)
    for lang in ("en", "zh"):
        assert passes(FIRST[Intent.REFUND, lang], reply)


@pytest.mark.parametrize(
    "reply",
    [
        "No refunds after 14 days… actually no refunds at all.",
        "Within 14 days? Sorry, the course is non-refundable.",
        "The course is not refundable, even within 14 days.",
        "We don't offer refunds, not even in the first two weeks.",
        "Refunds are not available, 14 days or not.",
        "Refunds within 14 days.",
        "Refunds are possible.",
        "14 天内？抱歉，课程不能退款。",
        "课程不退款，14 天内也不行。",
        "两周内也不可以退。",
    ],
)
def test_a_refund_denied_or_without_its_window_fails(reply: str) -> None:
    ok = "Refunds within 14 days." == reply
    assert states_refund_policy(reply, RULES) is ok
    if not ok:
        assert not passes(FIRST[Intent.REFUND, "en"], reply)


@pytest.mark.parametrize(
    ("reply", "price"),
    [
        ("It costs $199.", True),
        ("The price is 199 dollars.", True),
        ("USD 199 once.", True),
        ("It costs 199.", True),
        ("课程 199 美元。", True),
        ("一共199元。", True),
        ("It is 199.", False),
        ("Lesson 199 covers decorators.", False),
        ("It costs $1999.", False),
        ("It costs $19.", False),
    ],
)
def test_pricing_needs_199_with_a_currency_or_price_word(reply: str, price: bool) -> None:
    assert states_price(reply, RULES) is price


@pytest.mark.parametrize(
    ("reply", "link"),
    [
        (f"Here it is: {SIGNUP_URL}", True),
        ("Go to learn.example.com/signup to join.", True),
        ("Here is the sign-up link.", False),
        ("这是报名链接。", False),
        ("Sign up at https://example.com/signup", False),
    ],
)
def test_a_click_needs_the_real_signup_url(reply: str, link: bool) -> None:
    assert has_cta(reply, RULES) is link
    ready = FIRST[Intent.SIGNUP_READY, "en"]
    assert judge_reply(ready, reply, SETTINGS, random.Random(0)).cta_click is link  # noqa: S311


@pytest.mark.parametrize(
    ("reply", "projects"),
    [
        ("Every module ends with a hands-on project.", True),
        ("You build small projects.", True),
        ("每个模块都有实战项目。", True),
        ("You learn Python basics and testing.", False),
    ],
)
def test_curriculum_needs_the_projects(reply: str, projects: bool) -> None:
    assert states_projects(reply, RULES) is projects
    assert passes(FIRST[Intent.CURRICULUM, "en"], reply) is projects


def test_a_job_reply_must_refuse_to_promise() -> None:
    question = FIRST[Intent.JOB_GUARANTEE, "en"]
    assert problem_types_of(question, ["The course has great projects."], RULES) == [
        "missing_knowledge"
    ]


@pytest.mark.parametrize("question", ITEMS, ids=lambda i: i.item_id)
def test_every_reference_states_its_own_facts_and_is_focused(question: ScenarioItem) -> None:
    topics = topics_stated(question.reference, RULES, question.intent)
    if question.intent.value in RULES.required_topics:
        assert question.intent in topics
    assert len(topics - {question.intent}) <= RULES.max_unasked_topics
    assert passes(question, question.reference)
