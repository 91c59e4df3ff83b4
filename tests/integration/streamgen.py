"""A deterministic scripted stream for capture tests: many conversations, every detector."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

QUESTIONS = [
    "Can I get a refund if I quit after the first week?",
    "报名以后不想学了可以退款吗？",
    "How much is the data science course?",
    "Python 全栈课程多少钱？",
]
DODGES = ["Our courses are great!", "我们的服务一流。"]


def write_stream(  # noqa: C901
    path: Path, *, conversations: int, seed: int = 7, profiles: bool = True
) -> int:
    """Write a JSONL stream; returns the number of events.

    ``profiles=False`` leaves out the ``llm.users`` events: tiers then come only from
    the events themselves, so the result does not depend on which topic is read first.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = []

    def add(event_type: str, at: datetime, **fields: Any) -> None:
        events.append(
            {"type": event_type, "event_id": f"e{len(events):06d}", "ts": at.isoformat(), **fields}
        )

    tiers = []
    for u in range(conversations // 3 + 1):
        tiers.append(rng.choice(["standard", "standard", "high_value", "vip"]))
        if profiles:
            add("user", start, user_id=f"u{u}", tier=tiers[-1], lifetime_value=float(u))
    for c in range(conversations):
        cid, uid = f"c{c:05d}", f"u{c // 3}"
        at = start + timedelta(minutes=c)
        question = rng.choice(QUESTIONS)
        repeats = rng.choice([1, 1, 2, 4])
        index = 0
        for _ in range(repeats):
            add(
                "turn",
                at,
                conversation_id=cid,
                user_id=uid,
                turn_index=index,
                role="user",
                text=question,
            )
            add(
                "turn",
                at,
                conversation_id=cid,
                user_id=uid,
                turn_index=index + 1,
                role="assistant",
                text=rng.choice(DODGES),
                model_version="model_v1",
            )
            index += 2
            at += timedelta(seconds=20)
        roll = rng.random()
        if roll < 0.15:
            add(
                "turn",
                at,
                conversation_id=cid,
                user_id=uid,
                turn_index=index,
                role="user",
                text="I want to talk to a human",
            )
        elif roll < 0.3:
            # The tier rides on the event: a lookup in user_profiles would race the
            # users topic and make two runs differ by arrival order alone.
            add(
                "feedback",
                at,
                conversation_id=cid,
                user_id=uid,
                kind="thumbs_down",
                user_tier=tiers[c // 3],
            )
        elif roll < 0.4:
            add("feedback", at, conversation_id=cid, user_id=uid, kind="complaint", comment="scam")
        elif roll < 0.5:
            add(
                "qa",
                at,
                conversation_id=cid,
                reviewer="qa",
                acceptance="Reject",
                problem_types=["missing_knowledge"],
                risk_level="high",
                corrected_response="Full refund within 14 days.",
            )
        elif roll < 0.6:
            add("outcome", at, conversation_id=cid, user_id=uid, kind="cta_click", value=0)
    with path.open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
    return len(events)
