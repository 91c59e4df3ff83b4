"""Default complaint and human-demand lexicons (Chinese and English) and their matcher.

Terms are matched on :func:`detectors.text.normalize`'d text with terms
normalized the same way, so case, full-width forms and punctuation do not
matter (``rip-off`` matches "RIP OFF" and "rip-off"). Terms with a CJK character
match as substrings, since Chinese has no word boundaries; other terms match as
whole words (``refund`` does not match "refundable", but does match in
"我要refund"). Each lexicon compiles
to one alternation regex, cached per term tuple, so matching a turn is one C
scan. Plain lexicons cannot read negation ("I won't file a complaint" matches);
the review step downstream is where such false positives are dropped.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from detectors.text import CJK_RANGES, is_cjk, normalize

COMPLAINT_TERMS: Final[tuple[str, ...]] = (
    # zh
    "投诉",
    "退款",
    "退钱",
    "骗子",
    "骗人",
    "欺诈",
    "诈骗",
    "坑人",
    "举报",
    "维权",
    "消协",
    "12315",
    "差评",
    # en
    "file a complaint",
    "filing a complaint",
    "make a complaint",
    "lodge a complaint",
    "formal complaint",
    "complaint department",
    "refund",
    "refunds",
    "money back",
    "chargeback",
    "scam",
    "scammed",
    "scammer",
    "scammers",
    "fraud",
    "fraudulent",
    "rip-off",
    "ripoff",
    "ripped off",
    "report you",
)
"""Words and phrases of a user who complains, wants money back or alleges fraud."""

HUMAN_DEMAND_TERMS: Final[tuple[str, ...]] = (
    # zh
    "转人工",
    "人工客服",
    "人工服务",
    "找人工",
    "要人工",
    "真人客服",
    "接人工",
    # en
    "talk to a human",
    "speak to a human",
    "speak with a human",
    "talk to a person",
    "speak to a person",
    "talk to a real person",
    "real person",
    "human agent",
    "live agent",
    "live person",
    "talk to an agent",
    "speak to an agent",
    "speak with an agent",
    "customer service representative",
)
"""Phrases of a user who wants a human agent instead of the bot."""


_NOT_AFTER_WORD: Final = rf"(?<![^\W{CJK_RANGES}])"
"""Not preceded by a non-CJK word character: a word start, also right after a CJK character."""

_NOT_BEFORE_WORD: Final = rf"(?![^\W{CJK_RANGES}])"
"""Not followed by a non-CJK word character: a word end, also right before a CJK character."""


def _alternation(bodies: set[str]) -> str:
    """Longest first, so the match reported is the most specific term."""
    return "|".join(sorted(bodies, key=lambda body: (-len(body), body)))


@lru_cache(maxsize=16)
def compile_lexicon(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching any term on normalized text; None for an empty lexicon."""
    words: set[str] = set()
    cjk: set[str] = set()
    for term in terms:
        folded = normalize(term)
        if folded:
            body = r"\s*".join(re.escape(part) for part in folded.split(" "))
            (cjk if is_cjk(folded) else words).add(body)
    branches = [f"{_NOT_AFTER_WORD}(?:{_alternation(words)}){_NOT_BEFORE_WORD}"] if words else []
    if cjk:
        branches.append(_alternation(cjk))
    return re.compile("|".join(branches)) if branches else None


def find_term(normalized: str, terms: tuple[str, ...]) -> str | None:
    """The first lexicon match in a normalized text, or None."""
    pattern = compile_lexicon(terms)
    if pattern is None:
        return None
    found = pattern.search(normalized)
    return found.group(0) if found else None
