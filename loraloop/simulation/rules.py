"""The judge's patterns: what a reply must say, and what it must not, as regexes.

Read by :mod:`loraloop.simulation.text_rules`; set through
``LORALOOP_DEMO__RULES__<FIELD>`` (a JSON list of regexes), see
:mod:`loraloop.simulation.config`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

from loraloop.simulation.scenario import SIGNUP_URL


class JudgeRules(BaseModel):
    """The patterns behind the users' reactions and the QA reviewer.

    Each field is a tuple of regular expressions, matched case-insensitively on the
    NFKC-normalised reply (full-width digits and signs become ASCII). They describe
    what a reply *means* (a price with a currency, a refund with its window, a
    negated promise), not the words of the reference answers: a paraphrase passes,
    a keyword list does not. docs/demo.md gives the rules in words.
    """

    promise_patterns: tuple[str, ...] = Field(
        (
            r"\bguarantee[sd]?\b",
            r"\bpromise[sd]?\b",
            r"\b100\s*%",
            r"\bone hundred percent\b",
            r"\byou(?:'ll|’ll| will) be hired\b",
            r"\byou(?:'ll|’ll| will) (?:get|find|land|secure) (?:a|an|your)?\s*(?:\w+ )?"
            r"(?:job|position|role)\b",
            r"保证",
            r"承诺",
            r"百分之百",
            r"包就业",
            r"包找工作",
            r"包分配",
            r"(?:就|都)能(?:找到工作|就业|被录用)",
        ),
        description="Strong promise cues. Affirmed (not negated) in a clause that names an "
        "outcome (promise_outcome_patterns), or anywhere in a reply to a job question, "
        "the reply over-promises.",
    )
    certainty_patterns: tuple[str, ...] = Field(
        (
            r"\bdefinitely\b",
            r"\bcertainly\b",
            r"\bsurely\b",
            r"\bfor sure\b",
            r"\bassure[sd]?\b",
            r"\bwithout (?:a )?doubt\b",
            r"一定",
            r"肯定",
            r"必定",
            r"必然",
            r"绝对",
        ),
        description="Weak certainty cues: an over-promise only when affirmed in a clause "
        "that names an outcome ('you will definitely be hired').",
    )
    promise_outcome_patterns: tuple[str, ...] = Field(
        (
            r"\bjobs?\b",
            r"\bhired?\b",
            r"\bemploy\w*",
            r"\bcareers?\b",
            r"\bpositions?\b",
            r"\bsalar(?:y|ies)\b",
            r"\b(?:developer|programmer|engineer)s?\b",
            r"\bsucce(?:ss|ssful|ed)\w*",
            r"工作",
            r"就业",
            r"录用",
            r"入职",
            r"岗位",
            r"高薪",
            r"薪资",
            r"程序员",
            r"工程师",
            r"成功",
        ),
        description="What nobody can promise: a job, being hired, a career, success.",
    )
    negation_patterns: tuple[str, ...] = Field(
        (
            r"\b(?:no|not|never|nobody|none|nothing|neither|nor|cannot|unable|impossible)\b",
            r"\bno[- ]one\b",
            r"n['’]t\b",
            r"不(?![管用过错仅但论久少同断停])",
            r"没有?(?!问题|关系)",
            r"无法",
            r"无人",
            r"未(?!来)",
            r"难以",
        ),
        description="Negators. A cue is negated when one of these ends at most "
        "negation_window tokens before it in the same clause ('No course can guarantee "
        "you a job', '我们不能保证你找到工作').",
    )
    contrast_patterns: tuple[str, ...] = Field(
        (r"\b(?:but|however|although|though|yet|whereas)\b", r"但是?", r"不过", r"可是", r"然而"),
        description="Contrast words that start a new clause, like punctuation: a negation "
        "does not reach across them ('no course can guarantee a job but we guarantee …').",
    )
    negation_window: int = Field(
        5,
        ge=0,
        description="Tokens (words, or CJK characters) allowed between a negator and the cue "
        "it negates.",
    )
    cta_patterns: tuple[str, ...] = Field(
        (re.escape(SIGNUP_URL.removeprefix("https://")),),
        description="The real sign-up URL: a reply containing it offers the link (has_cta); "
        "words such as 'sign-up link' without the URL are not a link.",
    )
    price_patterns: tuple[str, ...] = Field(
        (
            r"(?:\$|\bus\$|\busd\s*\$?)\s*199(?![\d]|[.,][1-9])",
            r"(?<![\d.,])199\s*(?:dollars?|usd|bucks)\b",
            r"\b(?:costs?|price[sd]?|priced|pay|fee|fees)\b[^.?!\d]{0,20}(?<![\d.,])199\b",
            r"(?<![\d.,])199\s*(?:美元|美金|元|块)",
            r"一百九十九\s*(?:美元|美金|元|块)",
        ),
        description="The price, 199, with a currency or a price word ($199, 199 dollars, "
        "USD 199, costs 199, 199 美元, 199元).",
    )
    refund_patterns: tuple[str, ...] = Field(
        (
            r"\brefund(?:s|ed|able)?\b",
            r"\bmoney back\b",
            r"\breimburse\w*",
            r"退款",
            r"退钱",
            r"退费",
            r"退还",
            r"全额退",
        ),
        description="A refund is mentioned (it must also be affirmed and have its window).",
    )
    refund_window_patterns: tuple[str, ...] = Field(
        (
            r"\b(?:14|fourteen)[\s-]*days?\b",
            r"\b(?:two|2)[\s-]*weeks?\b",
            r"(?:14|十四)\s*(?:天|日)",
            r"(?:两|二|2)\s*(?:周|个星期|星期)",
        ),
        description="The refund window, 14 days, however written (14-day, fourteen days, "
        "two weeks, 14 天, 十四天, 两周).",
    )
    refund_denial_patterns: tuple[str, ...] = Field(
        (
            r"\bno\s+(?:\w+\s+)?refunds?\b",
            r"\bnon-?refundable\b",
            r"\bnot\s+(?:be\s+)?refundable\b",
            r"\bnot\s+eligible\s+for\s+(?:a\s+)?refunds?\b",
            r"\b(?:don['’]t|do not|doesn['’]t|does not|won['’]t|will not|never|cannot|"
            r"can['’]t|can not)\s+(?:offer|give|provide|issue|accept|allow|do)\s+"
            r"(?:any\s+|a\s+)?refunds?\b",
            r"\brefunds?\b[^.?!]{0,20}(?:\bnot|n['’]t)\s+(?:be\s+)?"
            r"(?:possible|available|allowed|offered|given|accepted)\b",
            r"\b(?:cannot|can['’]t|can not|unable to)\s+(?:be\s+)?(?:get\s+(?:a\s+)?)?"
            r"refund(?:ed)?\b",
            r"\b(?:cannot|can['’]t|can not|won['’]t)\s+get\s+(?:your|the)\s+money\s+back\b",
            r"\bno\s+money\s+back\b",
            r"不能退",
            r"不退",
            r"不可以退",
            r"不可退",
            r"不予退",
            r"无法退",
            r"不支持退",
            r"不给退",
            r"没有退款",
            r"概不退",
        ),
        description="A refund denied or contradicted ('no refunds', 'non-refundable', 不能退, "
        "不退款): anywhere in the reply, the refund policy is not stated.",
    )
    project_patterns: tuple[str, ...] = Field(
        (
            r"\bprojects?\b",
            r"\bhands-on\b",
            r"\bexercises?\b",
            r"\bbuild (?:your own|real|small|an? )",
            r"项目",
            r"实战",
            r"动手",
        ),
        description="What the course teaches by doing: projects, hands-on exercises.",
    )
    objection_patterns: tuple[str, ...] = Field(
        (
            r"\bfree\b[^.?!]{0,25}\b(?:lessons?|classes?|trial|preview|modules?)\b",
            r"\b(?:lessons?|classes?|modules?)\b[^.?!]{0,25}\bfree\b",
            r"\bfree (?:trial|preview)\b",
            r"\binstal?l?ments?\b",
            r"\b(?:monthly|split) payments?\b",
            r"\bpay(?:ing)? (?:in|over) (?:\d|two|three|parts)",
            r"免费",
            r"试听",
            r"试看",
            r"分期",
            r"分(?:\s*\d\s*|两|三)期",
        ),
        description="Answers to a price objection: the free first lessons or installments.",
    )
    policy_boundary_patterns: tuple[str, ...] = Field(
        (
            r"\bdiscount codes?\b",
            r"\bcoupons?\b",
            r"\bpromo(?:tion(?:al)?)? codes?\b",
            r"\b\d+\s*% off\b",
            r"优惠码",
            r"优惠券",
            r"打折",
            r"折扣",
        ),
        description="Discounts the policy does not have; affirmed (not 'we have no coupons'), "
        "a policy risk.",
    )
    required_topics: tuple[str, ...] = Field(
        ("pricing", "refund", "curriculum", "job_guarantee"),
        description="Intents whose first reply must state their facts (the price, the refund "
        "policy, the projects, that nobody can promise a job); without them the user asks "
        "again and QA labels missing_knowledge.",
    )
    max_unasked_topics: int = Field(
        1,
        ge=0,
        description="A reply stating the facts of more intents than this that were not asked "
        "about is unfocused (keyword stuffing): the user asks again, QA labels "
        "missing_knowledge.",
    )

    @field_validator(
        "promise_patterns",
        "certainty_patterns",
        "promise_outcome_patterns",
        "negation_patterns",
        "contrast_patterns",
        "cta_patterns",
        "price_patterns",
        "refund_patterns",
        "refund_window_patterns",
        "refund_denial_patterns",
        "project_patterns",
        "objection_patterns",
        "policy_boundary_patterns",
    )
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                msg = f"{pattern!r} is not a regular expression ({error})"
                raise ValueError(msg) from error
        return patterns
