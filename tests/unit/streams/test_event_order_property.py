"""Property (issue 17): capture's results do not depend on how its topics interleave.

Generated conversations (turns, feedback, handoffs, QA verdicts, outcomes) are read as
Kafka would hand them over: each topic in its own order, the topics interleaved at random,
cut into batches of random sizes. Through the capture core, every such arrival gives
exactly the signals, samples, inclusion probabilities and released QA verdicts of the
stream read in event order.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.rows import COLUMNS
from detectors.config import DetectorSettings
from loraloop.events import Tier
from loraloop.settings import StreamSettings
from streams.capture_core import CaptureCore, Processed, RawMessage
from tests.unit.streams.test_capture_core import FakeClock

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
IDLE_S = 1.0
ORDERED = StreamSettings(event_order=True, allowed_lateness_s=math.inf, watermark_idle_s=IDLE_S)
TIERS = {"u0": Tier.VIP, "u1": Tier.STANDARD, "u2": Tier.HIGH_VALUE}

USER_TEXTS = [
    "When will my order ship?",
    "when will my order ship??",
    "Is this a scam? I want a refund",
    "I want to talk to a human",
    "thanks",
    "我的订单什么时候发货？",
    "转人工",
]

# One step of a conversation: what happens next, and how many seconds later (0: same instant).
steps = st.tuples(
    st.sampled_from(["user", "bot", "feedback", "handoff", "qa", "outcome"]),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=len(USER_TEXTS) - 1),
)
conversations = st.lists(st.lists(steps, min_size=1, max_size=12), min_size=1, max_size=4)


def _script(cid: str, user: str, plan: Sequence[tuple[str, int, int]]) -> list[tuple[str, Any]]:
    """(topic, payload) of a conversation in event order."""
    out: list[tuple[str, Any]] = []
    at, index = T0, 0
    common = {"conversation_id": cid}
    for n, (what, gap, pick) in enumerate(plan):
        at += timedelta(seconds=gap)
        meta = {"event_id": f"{cid}-{n}", "ts": at.isoformat(), **common}
        if what in {"user", "bot"}:
            payload = {**meta, "user_id": user, "turn_index": index}
            if what == "user":
                payload.update(role="user", text=USER_TEXTS[pick])
            else:
                payload.update(role="assistant", text="Let me check.", model_version=f"v{pick}")
            out.append(("llm.turns", payload))
            index += 1
        elif what == "feedback":
            kind = ["thumbs_down", "complaint", "thumbs_up", "thumbs_down"][pick % 4]
            out.append(("llm.feedback", {**meta, "user_id": user, "kind": kind}))
        elif what == "handoff":
            out.append(
                (
                    "llm.handoffs",
                    {**meta, "user_id": user, "turn_index": index, "initiated_by": "user"},
                )
            )
            index += 1
        elif what == "qa":
            verdict = {
                "reviewer": "qa",
                "acceptance": ["Risk", "Reject", "Accept", "Risk"][pick % 4],
                "risk_level": ["low", "critical", "medium", "high"][pick % 4],
                "problem_types": ["missing_knowledge"],
            }
            out.append(("llm.qa", {**meta, **verdict}))
        else:
            out.append(
                ("llm.outcomes", {**meta, "user_id": user, "kind": "cta_click", "value": 0.0})
            )
    return out


def _messages(plans: Sequence[Sequence[tuple[str, int, int]]]) -> list[RawMessage]:
    """Every conversation's events in event order (ties: the order they were generated)."""
    scripted = [
        (topic, payload)
        for c, plan in enumerate(plans)
        for topic, payload in _script(f"c{c}", f"u{c % 3}", plan)
    ]
    scripted.sort(key=lambda item: item[1]["ts"])  # stable: same instant keeps script order
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    messages = []
    for topic, payload in scripted:
        partition = int(payload["conversation_id"][1:]) % 2
        offset = offsets[topic, partition]
        offsets[topic, partition] += 1
        messages.append(RawMessage(topic, partition, offset, orjson.dumps(payload)))
    return messages


def _interleave(messages: Sequence[RawMessage], rng: random.Random) -> list[RawMessage]:
    """The topic-partitions interleaved at random, each one's own order kept."""
    queues: dict[tuple[str, int], list[RawMessage]] = defaultdict(list)
    for message in messages:
        queues[message.topic, message.partition].append(message)
    out = []
    while queues:
        key = rng.choice(sorted(queues))
        out.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    return out


def _batches(messages: Sequence[RawMessage], rng: random.Random) -> list[list[RawMessage]]:
    out, i = [], 0
    while i < len(messages):
        size = rng.randint(1, 6)
        out.append(list(messages[i : i + size]))
        i += size
    return out


def _rows(processed: Processed, table: str) -> list[dict[str, Any]]:
    encoded = processed.rows.get(table)
    if encoded is None:
        return []
    return [
        dict(zip(COLUMNS[table], orjson.loads(line), strict=True))
        for line in encoded.data.split(b"\n")
    ]


def _outcome(batches: Sequence[Sequence[RawMessage]]) -> dict[str, Any]:
    """What the warehouse keeps after the batches and a final idle tick (FINAL semantics)."""
    clock = FakeClock()
    core = CaptureCore(ORDERED, DetectorSettings(), cache_size=1000, clock=clock)
    results = []
    for batch in batches:
        core.begin(batch)
        results.append(core.finish({}, TIERS))
    clock.now += 10 * IDLE_S  # the stream goes idle: everything pending is final
    core.begin([])
    results.append(core.finish({}, TIERS))
    assert core.pending == 0
    signals: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    rollups: dict[str, Any] = {}
    verdicts = []
    for processed in results:
        for row in _rows(processed, "signals"):
            signals[row["signal_id"]] = row  # ReplacingMergeTree(ingested_at): last wins
        for row in _rows(processed, "samples"):
            samples[row["sample_id"]] = row  # revision only grows
        for row in _rows(processed, "conversations"):
            rollups[row["conversation_id"]] = row
        verdicts += [v.event_id for v in processed.verdicts]
    assert sum(p.events for p in results) == len({m for b in batches for m in b})
    return {
        "signals": signals,
        "samples": samples,
        "pi": {
            c: (r["sampled"], r["inclusion_probability"], r["detectors"])
            for c, r in rollups.items()
        },
        "rollups": rollups,
        "verdicts": sorted(verdicts),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=conversations, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_any_interleaving_of_the_topics_gives_the_ordered_streams_results(
    plans: list[list[tuple[str, int, int]]], seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test arrival orders
    ordered = _messages(plans)
    expected = _outcome(_batches(ordered, rng))

    got = _outcome(_batches(_interleave(ordered, rng), rng))

    assert got["signals"] == expected["signals"]
    assert got["samples"] == expected["samples"]
    assert got["pi"] == expected["pi"]
    assert got["rollups"] == expected["rollups"]
    assert got["verdicts"] == expected["verdicts"]
