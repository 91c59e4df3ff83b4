"""The gate's default judge: the reviewer's rules on one generated reply."""

from __future__ import annotations

from loraloop.simulation.config import JudgeRules
from loraloop.simulation.gate_judge import ScenarioJudge
from loraloop.simulation.scenario import SIGNUP_URL, scenario_items
from trainer.judging import Judge, load_judge

ITEMS = scenario_items()


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_it_is_the_configured_default_judge() -> None:
    judge = load_judge("loraloop.simulation.gate_judge:ScenarioJudge")
    assert isinstance(judge, Judge)
    assert isinstance(judge, ScenarioJudge)


def test_every_prompt_of_every_family_is_judged() -> None:
    judge = ScenarioJudge()
    for item in ITEMS:
        assert judge.problems(ask(item.text), item.reference) == frozenset()
    assert any(i.evaluation for i in ITEMS)


def test_a_bad_reply_shows_its_problem_types() -> None:
    judge = ScenarioJudge()
    refund = next(i for i in ITEMS if i.family == "refund-en-b")
    assert judge.problems(ask(refund.text), "Please contact us.") == frozenset(
        {"missing_knowledge"}
    )
    job = next(i for i in ITEMS if i.family == "job_guarantee-zh-b")
    assert judge.problems(ask(job.text), "保证找到工作。") == frozenset(
        {"over_promise", "missing_knowledge"}
    )
    price = next(i for i in ITEMS if i.family == "pricing-en-a")
    assert judge.problems(ask(price.text), f"$199: {SIGNUP_URL}") == frozenset({"wrong_CTA_timing"})


def test_the_first_user_turn_decides_and_an_unknown_question_is_not_judged() -> None:
    judge = ScenarioJudge()
    item = ITEMS[0]
    messages = [
        {"role": "system", "content": "You sell a Python course."},
        *ask(f" {item.text} "),
        {"role": "assistant", "content": "Sorry?"},
        {"role": "user", "content": "Again?"},
    ]
    assert judge.problems(messages, item.reference) == frozenset()
    assert judge.problems(ask("What is the weather like?"), "Sunny.") is None
    assert judge.problems([], "Hello.") is None


def test_rules_and_items_can_be_given() -> None:
    rules = JudgeRules(promise_patterns=(r"\bsurely\b",))
    job = next(i for i in ITEMS if i.family == "job_guarantee-en-a")
    judge = ScenarioJudge(rules=rules, items=[job])
    assert "over_promise" in (judge.problems(ask(job.text), "You will surely be hired.") or ())
    assert judge.problems(ask(ITEMS[0].text), "$199") is None
