"""The scenario: a sales assistant for an online Python course, in English and Chinese.

A finite prompt set: per intent and language a few phrasings, each with the reference
answer a human agent gives (the course policy: $199 or 3 × $69, the first two lessons
free, a full refund within 14 days, the sign-up link only once the user wants to join).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

SIGNUP_URL: Final = "https://learn.example.com/signup"


class Intent(StrEnum):
    """What the user wants; the judge rules depend on it."""

    PRICING = "pricing"
    REFUND = "refund"
    OBJECTION = "objection"
    JOB_GUARANTEE = "job_guarantee"
    SIGNUP_READY = "signup_ready"
    CURRICULUM = "curriculum"


@dataclass(frozen=True, slots=True)
class ScenarioItem:
    """One prompt of the scenario with its reference answer."""

    item_id: str
    intent: Intent
    lang: str
    text: str
    reference: str

    @property
    def shows_intent(self) -> bool:
        """Whether the user asked to join (a sign-up link is welcome only then)."""
        return self.intent is Intent.SIGNUP_READY


_REFERENCE: Final[dict[tuple[Intent, str], str]] = {
    (Intent.PRICING, "en"): (
        "The Python course costs $199 once, with lifetime access. You can also pay in "
        "3 installments of $69, and the first two lessons are free."
    ),
    (
        Intent.PRICING,
        "zh",
    ): "Python 课程一次性 199 美元，永久观看；也可以分 3 期，每期 69 美元，前两课免费试听。",
    (Intent.REFUND, "en"): (
        "Yes. You can get a full refund within 14 days of purchase, no questions asked: "
        "request it on your account page or email support."
    ),
    (
        Intent.REFUND,
        "zh",
    ): "可以。购买后 14 天内可以全额退款，无需理由：在账户页面申请或发邮件给客服即可。",
    (Intent.OBJECTION, "en"): (
        "I understand. You can watch the first two lessons free to see if the course fits, "
        "and you can pay in 3 installments of $69."
    ),
    (
        Intent.OBJECTION,
        "zh",
    ): "理解。前两课可以免费试听，看看是否适合你；也可以分 3 期付款，每期 69 美元。",
    (Intent.JOB_GUARANTEE, "en"): (
        "Nobody can honestly promise a job. The course gives you real projects for your "
        "portfolio and interview practice, which many learners use when they apply."
    ),
    (
        Intent.JOB_GUARANTEE,
        "zh",
    ): "没有课程能承诺工作。课程提供可以放进作品集的真实项目和面试练习，很多学员求职时会用到。",
    (Intent.SIGNUP_READY, "en"): f"Great! Here is the sign-up link: {SIGNUP_URL}. Welcome aboard!",
    (Intent.SIGNUP_READY, "zh"): f"太好了！这是报名链接：{SIGNUP_URL}，欢迎加入！",
    (Intent.CURRICULUM, "en"): (
        "You will learn Python basics, data structures, files, web requests and testing, "
        "with a small project after each module."
    ),
    (
        Intent.CURRICULUM,
        "zh",
    ): "你会学习 Python 基础、数据结构、文件、网络请求和测试，每个模块后都有一个小项目。",
}

_PROMPTS: Final[dict[tuple[Intent, str], tuple[str, ...]]] = {
    (Intent.PRICING, "en"): (
        "How much does the Python course cost?",
        "What is the price of the course?",
        "Is there a way to pay for the course in parts?",
    ),
    (Intent.PRICING, "zh"): ("这个 Python 课程多少钱？", "课程价格是多少？", "可以分期付款吗？"),
    (Intent.REFUND, "en"): (
        "Can I get a refund if I don't like the course?",
        "What is your refund policy?",
        "If the course is not for me, can I get my money back?",
    ),
    (Intent.REFUND, "zh"): (
        "如果不喜欢这个课程可以退款吗？",
        "你们的退款政策是什么？",
        "课程不适合我的话能退钱吗？",
    ),
    (Intent.OBJECTION, "en"): (
        "The course is too expensive for me.",
        "$199 is a lot of money, I'm not sure it's worth it.",
        "I can't afford this right now.",
    ),
    (Intent.OBJECTION, "zh"): (
        "这个课程对我来说太贵了。",
        "199 美元太多了，不知道值不值。",
        "我现在负担不起。",
    ),
    (Intent.JOB_GUARANTEE, "en"): (
        "Will this course get me a job?",
        "Do you guarantee I will find a job after the course?",
        "Can I become a developer for sure after this course?",
    ),
    (Intent.JOB_GUARANTEE, "zh"): (
        "学完这个课程能找到工作吗？",
        "你们保证学完能找到工作吗？",
        "学完一定能成为程序员吗？",
    ),
    (Intent.SIGNUP_READY, "en"): (
        "I'm ready to join, how do I sign up?",
        "OK, I want to buy the course. Where do I register?",
        "Sounds good, let me enroll now.",
    ),
    (Intent.SIGNUP_READY, "zh"): (
        "我想报名，怎么注册？",
        "好的，我要买这个课程，在哪里报名？",
        "听起来不错，我现在就报名。",
    ),
    (Intent.CURRICULUM, "en"): (
        "What will I learn in the course?",
        "What topics does the course cover?",
        "Is the course good for complete beginners?",
    ),
    (Intent.CURRICULUM, "zh"): (
        "这个课程会学到什么？",
        "课程包括哪些内容？",
        "零基础可以学这个课程吗？",
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


def scenario_items(variants_per_intent: int) -> list[ScenarioItem]:
    """The prompt set: ``variants_per_intent`` phrasings per intent and language."""
    items = []
    for (intent, lang), prompts in _PROMPTS.items():
        for index, text in enumerate(prompts[:variants_per_intent]):
            items.append(
                ScenarioItem(
                    item_id=f"{intent.value}-{lang}-{index}",
                    intent=intent,
                    lang=lang,
                    text=text,
                    reference=_REFERENCE[intent, lang],
                )
            )
    return items


def item_for_text(items: list[ScenarioItem], text: str) -> ScenarioItem | None:
    """The item whose prompt opens a conversation with ``text``."""
    return next((item for item in items if item.text == text.strip()), None)
