"""Batch decoding: valid payloads become rows, everything else a dead letter; nothing raises."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from analytics.rows import COLUMNS
from loraloop.events import KINDS
from streams.ingest import decode_batch


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    value: Any


TURN = {
    "event_id": "e1",
    "ts": "2026-11-01T10:00:00Z",
    "conversation_id": "c1",
    "user_id": "u1",
    "turn_index": 0,
    "role": "user",
    "text": "我想退款",
}


def test_decode_batch_splits_rows_and_dead_letters() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    messages = [
        Msg("llm.turns", 0, 0, orjson.dumps(TURN)),
        Msg("llm.turns", 0, 1, b"\xff\xfe not utf8"),
        Msg("llm.turns", 0, 2, orjson.dumps({**TURN, "role": "robot"})),
        Msg("llm.turns", 0, 3, None),
        Msg("llm.turns", 0, 4, deep),
        Msg("llm.turns", 0, 5, orjson.dumps({**TURN, "event_id": "e2", "turn_index": 1})),
    ]
    batch = decode_batch(KINDS["turn"], messages)
    assert [e.event_id for e in batch.events] == ["e1", "e2"]  # type: ignore[attr-defined]
    assert len(batch.rows["turns"]) == 2
    assert len(batch.rows["turns"][0]) == len(COLUMNS["turns"])
    assert [letter.offset for letter in batch.letters] == [1, 2, 3, 4]
    assert "role" in batch.letters[1].error
    assert base64.b64decode(batch.letters[0].raw_b64) == b"\xff\xfe not utf8"
    assert batch.letters[2].error.startswith("<payload>: empty")
