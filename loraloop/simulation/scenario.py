"""The scenario: a sales assistant for an online Python course, in English and Chinese.

A finite prompt set in *families*: per intent and language two families of
``PHRASINGS_PER_FAMILY`` phrasings, each family with its own reference answer (the
words a human agent uses), all stating the same course policy: $199 or 3 × $69, the
first two lessons free, a full refund within 14 days, the sign-up link only once the
user wants to join, and nobody can promise a job.

Family ``a`` is the traffic the loop may capture and train on; family ``b`` is the
evaluation family: never trained, it measures whether a fix generalises. Phrasings of
different families are not near-duplicates of each other (tests/unit/simulation
checks it with a character-trigram Jaccard below 0.8), so the trainer's family
clustering keeps them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from trainer.evalset import EvalPrompt

SIGNUP_URL: Final = "https://learn.example.com/signup"
PHRASINGS_PER_FAMILY: Final = 4
"""Phrasings each family holds (so 8 per intent and language)."""

TRAINABLE_FAMILY: Final = "a"
EVALUATION_FAMILY: Final = "b"


class Intent(StrEnum):
    """What the user wants; the judge rules depend on it."""

    PRICING = "pricing"
    REFUND = "refund"
    OBJECTION = "objection"
    JOB_GUARANTEE = "job_guarantee"
    SIGNUP_READY = "signup_ready"
    CURRICULUM = "curriculum"


EVALUATION_PROBLEM_TYPES: Final[dict[Intent, tuple[str, ...]]] = {
    Intent.PRICING: ("missing_knowledge",),
    Intent.REFUND: ("missing_knowledge",),
    Intent.CURRICULUM: ("missing_knowledge",),
    Intent.JOB_GUARANTEE: ("over_promise",),
    Intent.OBJECTION: ("wrong_objection_handling",),
    Intent.SIGNUP_READY: ("wrong_CTA_timing",),
}
"""The problem type an evaluation prompt of each intent tests."""


@dataclass(frozen=True, slots=True)
class ScenarioItem:
    """One prompt of the scenario with its family's reference answer."""

    item_id: str
    intent: Intent
    lang: str
    text: str
    reference: str
    family: str
    evaluation: bool

    @property
    def shows_intent(self) -> bool:
        """Whether the user asked to join (a sign-up link is welcome only then)."""
        return self.intent is Intent.SIGNUP_READY


@dataclass(frozen=True, slots=True)
class _Family:
    reference: str
    prompts: tuple[str, ...]


_FAMILIES: Final[dict[tuple[Intent, str, str], _Family]] = {
    (Intent.PRICING, "en", "a"): _Family(
        "The Python course costs $199 once, with lifetime access. You can also pay in "
        "3 installments of $69, and the first two lessons are free.",
        (
            "How much does the Python course cost?",
            "What is the price of the course?",
            "Is there a way to pay for the course in parts?",
            "What will the course set me back?",
        ),
    ),
    (Intent.PRICING, "en", "b"): _Family(
        "It is a one-time payment of $199 for lifetime access. If you prefer, split it into "
        "three monthly installments of $69 each; the first two lessons are free to watch.",
        (
            "What would I have to pay to enroll in your Python program?",
            "Could you tell me the fee for this class?",
            "What's the total, and are there payment plans?",
            "How many dollars is the full training?",
        ),
    ),
    (Intent.PRICING, "zh", "a"): _Family(
        "Python 课程一次性 199 美元，永久观看；也可以分 3 期，每期 69 美元，前两课免费试听。",
        (
            "这个 Python 课程多少钱？",
            "课程价格是多少？",
            "可以分期付款吗？",
            "报这个课要花多少钱？",
        ),
    ),
    (Intent.PRICING, "zh", "b"): _Family(
        "整套课程 199 美元，买一次永久有效；想分开付的话可以分三期，每期 69 美元。前两节课免费。",
        (
            "学这门 Python 课需要交多少学费？",
            "费用怎么算？一共要付多少？",
            "请问报名的收费标准是什么？",
            "这套课卖几美元？",
        ),
    ),
    (Intent.REFUND, "en", "a"): _Family(
        "Yes. You can get a full refund within 14 days of purchase, no questions asked: "
        "request it on your account page or email support.",
        (
            "Can I get a refund if I don't like the course?",
            "What is your refund policy?",
            "If the course is not for me, can I get my money back?",
            "Do you offer refunds?",
        ),
    ),
    (Intent.REFUND, "en", "b"): _Family(
        "Of course. Ask for your money back within 14 days of buying and we return the whole "
        "amount; the account page or an email to support is enough.",
        (
            "Suppose I change my mind after paying, what happens?",
            "Is the purchase reversible if the lessons disappoint me?",
            "How long do I have to cancel and be reimbursed?",
            "What if I buy it and regret it later?",
        ),
    ),
    (Intent.REFUND, "zh", "a"): _Family(
        "可以。购买后 14 天内可以全额退款，无需理由：在账户页面申请或发邮件给客服即可。",
        (
            "如果不喜欢这个课程可以退款吗？",
            "你们的退款政策是什么？",
            "课程不适合我的话能退钱吗？",
            "买了以后还能退吗？",
        ),
    ),
    (Intent.REFUND, "zh", "b"): _Family(
        "没问题。购买之日起十四天内，觉得不合适就能申请全额退钱，在账户页面或发邮件给客服都行。",
        (
            "付款后我改变主意了怎么办？",
            "如果上了几节课觉得失望，钱还能拿回来吗？",
            "取消订单多久内可以拿回学费？",
            "买完后悔了有什么办法？",
        ),
    ),
    (Intent.OBJECTION, "en", "a"): _Family(
        "I understand. You can watch the first two lessons free to see if the course fits, "
        "and you can pay in 3 installments of $69.",
        (
            "The course is too expensive for me.",
            "$199 is a lot of money, I'm not sure it's worth it.",
            "I can't afford this right now.",
            "That price is too high for me.",
        ),
    ),
    (Intent.OBJECTION, "en", "b"): _Family(
        "That is a fair concern. Try the first two lessons for free before you decide, or "
        "spread the cost over three installments of $69.",
        (
            "Honestly, that seems pricey for an online class.",
            "My budget is tight, so I'm hesitant to spend that much.",
            "I'm a student and money is short at the moment.",
            "Other courses are cheaper, why should I pay more?",
        ),
    ),
    (Intent.OBJECTION, "zh", "a"): _Family(
        "理解。前两课可以免费试听，看看是否适合你；也可以分 3 期付款，每期 69 美元。",
        (
            "这个课程对我来说太贵了。",
            "199 美元太多了，不知道值不值。",
            "我现在负担不起。",
            "价格有点高，我再想想。",
        ),
    ),
    (Intent.OBJECTION, "zh", "b"): _Family(
        "可以理解。你可以先免费看前两节课再决定，也可以分三期付款，每期 69 美元。",
        (
            "网课卖这个价感觉不划算。",
            "我预算有限，花这么多钱有点犹豫。",
            "我还是学生，手头比较紧。",
            "别家的课更便宜，为什么要选你们？",
        ),
    ),
    (Intent.JOB_GUARANTEE, "en", "a"): _Family(
        "Nobody can honestly promise a job. The course gives you real projects for your "
        "portfolio and interview practice, which many learners use when they apply.",
        (
            "Will this course get me a job?",
            "Do you guarantee I will find a job after the course?",
            "Can I become a developer for sure after this course?",
            "Will I be hired after I finish?",
        ),
    ),
    (Intent.JOB_GUARANTEE, "en", "b"): _Family(
        "No course can guarantee you a job, and we will not pretend otherwise. What you get "
        "is portfolio projects and interview practice that help when you apply.",
        (
            "Is employment assured once I complete the program?",
            "Can you promise me a developer position?",
            "Do your graduates always land work in tech?",
            "If I finish everything, am I certain to be employed?",
        ),
    ),
    (Intent.JOB_GUARANTEE, "zh", "a"): _Family(
        "没有课程能承诺工作。课程提供可以放进作品集的真实项目和面试练习，很多学员求职时会用到。",
        (
            "学完这个课程能找到工作吗？",
            "你们保证学完能找到工作吗？",
            "学完一定能成为程序员吗？",
            "学完你们包就业吗？",
        ),
    ),
    (Intent.JOB_GUARANTEE, "zh", "b"): _Family(
        "我们不能保证你找到工作。不过课程里有可以写进简历的实战项目和面试练习，对求职有帮助。",
        (
            "完成课程后一定会被录用吗？",
            "你们能承诺给我安排一份开发岗位吗？",
            "你们的毕业生都能就业吗？",
            "全部学完就肯定能进科技公司吗？",
        ),
    ),
    (Intent.SIGNUP_READY, "en", "a"): _Family(
        f"Great! Here is the sign-up link: {SIGNUP_URL}. Welcome aboard!",
        (
            "I'm ready to join, how do I sign up?",
            "OK, I want to buy the course. Where do I register?",
            "Sounds good, let me enroll now.",
            "How can I register for the course?",
        ),
    ),
    (Intent.SIGNUP_READY, "en", "b"): _Family(
        f"Wonderful, you can enroll at {SIGNUP_URL} and start with the first lesson today.",
        (
            "Count me in, what's the next step to start?",
            "I've decided to purchase. Where do I pay?",
            "Great, I'd like to get started today.",
            "Take my order, I'm in.",
        ),
    ),
    (Intent.SIGNUP_READY, "zh", "a"): _Family(
        f"太好了！这是报名链接：{SIGNUP_URL}，欢迎加入！",
        (
            "我想报名，怎么注册？",
            "好的，我要买这个课程，在哪里报名？",
            "听起来不错，我现在就报名。",
            "我决定报名了，怎么操作？",
        ),
    ),
    (Intent.SIGNUP_READY, "zh", "b"): _Family(
        f"好的！点这里注册：{SIGNUP_URL}，注册后马上可以开始上课。",
        (
            "算我一个，下一步做什么？",
            "我要购买了，在哪里付款？",
            "太好了，我今天就想开始学。",
            "帮我下单吧，我加入。",
        ),
    ),
    (Intent.CURRICULUM, "en", "a"): _Family(
        "You will learn Python basics, data structures, files, web requests and testing, "
        "with a small project after each module.",
        (
            "What will I learn in the course?",
            "What topics does the course cover?",
            "Is the course good for complete beginners?",
            "What does the course teach?",
        ),
    ),
    (Intent.CURRICULUM, "en", "b"): _Family(
        "It covers Python fundamentals, working with data and files, calling web APIs and "
        "writing tests; every module ends with a hands-on project you build yourself.",
        (
            "Could you walk me through the syllabus?",
            "Which skills will I have by the end?",
            "I have never coded before, is this suitable for me?",
            "What do the modules contain?",
        ),
    ),
    (Intent.CURRICULUM, "zh", "a"): _Family(
        "你会学习 Python 基础、数据结构、文件、网络请求和测试，每个模块后都有一个小项目。",
        ("这个课程会学到什么？", "课程包括哪些内容？", "零基础可以学这个课程吗？", "课程教什么？"),
    ),
    (Intent.CURRICULUM, "zh", "b"): _Family(
        "每个模块都要动手做一个项目；内容有 Python 入门、数据处理、文件操作、"
        "调用网络接口和编写测试。",
        (
            "能介绍一下课程大纲吗？",
            "学完以后我会掌握哪些技能？",
            "我从来没写过代码，适合我吗？",
            "每个模块都讲些什么？",
        ),
    ),
}

REPEAT_SUFFIX: Final[dict[str, str]] = {
    "en": " You did not answer that.",
    "zh": "你没有回答我。",
}
"""Appended to a question the user asks again (a near-duplicate follow-up)."""

HUMAN_DEMAND: Final[dict[str, str]] = {
    "en": "This is not helping. Can I talk to a human?",
    "zh": "没有帮助，我要转人工。",
}
"""What a user says when they give up on the assistant."""

BASELINE_INTENTS: Final = frozenset({Intent.PRICING, Intent.CURRICULUM, Intent.SIGNUP_READY})
"""Intents whose reference answers seed the core baseline (the launch FAQ); refunds,
objections and job questions are learned from the field."""


def scenario_items(phrasings_per_family: int = PHRASINGS_PER_FAMILY) -> list[ScenarioItem]:
    """The prompt set: up to ``phrasings_per_family`` phrasings of every family."""
    items = []
    for (intent, lang, letter), family in _FAMILIES.items():
        name = f"{intent.value}-{lang}-{letter}"
        for index, text in enumerate(family.prompts[:phrasings_per_family]):
            items.append(
                ScenarioItem(
                    item_id=f"{name}-{index}",
                    intent=intent,
                    lang=lang,
                    text=text,
                    reference=family.reference,
                    family=name,
                    evaluation=letter == EVALUATION_FAMILY,
                )
            )
    return items


def item_for_text(items: Sequence[ScenarioItem], text: str) -> ScenarioItem | None:
    """The item whose prompt opens a conversation with ``text``."""
    stripped = text.strip()
    return next((item for item in items if item.text == stripped), None)


def evaluation_prompts(items: Sequence[ScenarioItem]) -> list[EvalPrompt]:
    """The evaluation set: every evaluation-family item as a one-turn prompt."""
    # The trainer's types, imported on use: the simulation imports no other layer at load.
    from trainer.evalset import EvalPrompt
    from trainer.records import ChatMessage

    return [
        EvalPrompt(
            family=item.family,
            problem_types=EVALUATION_PROBLEM_TYPES[item.intent],
            messages=(ChatMessage(role="user", content=item.text),),
        )
        for item in items
        if item.evaluation
    ]
