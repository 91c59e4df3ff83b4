"""Deterministic garbage lines to mix into event files (one bad payload a line)."""

# ruff: noqa: ARG005, E501 - a table of one-line makers, some ignore their index

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from loraloop.events import MAX_TEXT_CHARS


def garbage_lines(count: int, *, seed: int = 11, big: int = 60_000) -> list[bytes]:
    """``count`` lines that each fail: not JSON, bad UTF-8, deep, oversize, wrong fields..."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    makers: list[Callable[[int], bytes]] = [
        lambda i: b"#" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        lambda i: b"\xff\xfe bad utf-8 \xc3\x28 " + str(i).encode(),
        lambda i: b"[" * rng.randrange(1_100, 20_000),
        lambda i: json.dumps({"type": "turn", "event_id": f"bad-{i}", "ts": "2026-11-01T00:00:00Z",
                              "conversation_id": "cbad", "user_id": "u", "turn_index": 0,
                              "role": "user", "text": "x" * (MAX_TEXT_CHARS + 1)}).encode(),
        lambda i: json.dumps({"type": "turn", "event_id": f"bad-{i}", "ts": "2026-11-01T00:00:00",
                              "conversation_id": "cbad", "user_id": "u", "turn_index": 0,
                              "role": "user", "text": "naive"}).encode(),
        lambda i: json.dumps({"type": "feedback", "event_id": f"bad-{i}",
                              "ts": "2026-11-01T00:00:00Z", "conversation_id": "cbad",
                              "user_id": "u", "kind": "meh"}).encode(),
        lambda i: json.dumps({"type": "spaceship", "event_id": f"bad-{i}"}).encode(),
        lambda i: json.dumps({"event_id": f"bad-{i}"}).encode(),
        lambda i: json.dumps({"type": "qa", "event_id": f"bad-{i}", "ts": "2026-11-01T00:00:00Z",
                              "conversation_id": "cbad", "reviewer": "r", "acceptance": "Reject",
                              "risk_level": "high", "problem_types": ["'; DROP TABLE x; --"]}).encode(),
        lambda i: json.dumps({"type": "user", "event_id": f"bad-{i}", "ts": "2026-11-01T00:00:00Z",
                              "user_id": "u", "tier": "vip", "lifetime_value": -1}).encode(),
        lambda i: json.dumps({"type": "outcome", "event_id": f"bad-{i}", "ts": "2026-11-01T00:00:00Z",
                              "conversation_id": "cbad", "user_id": "u", "kind": "refund",
                              "value": 1, "extra": {"nested": [[[]]]}}).encode(),
        lambda i: b'{"type": "turn", "text": "' + b"y" * big + b'"',
        lambda i: b"[1, 2, 3]",
        lambda i: b'"just a string"',
    ]  # fmt: skip
    lines = []
    for i in range(count):
        raw = makers[i % len(makers)](i).replace(b"\n", b" ").replace(b"\r", b" ")
        lines.append(raw if raw.strip() else b"#blank")
    return lines


def mix(good: Path, out: Path, bad: list[bytes], *, seed: int = 5) -> None:
    """Write ``good``'s lines with ``bad`` interleaved at random positions."""
    rng = random.Random(seed)  # noqa: S311
    lines = good.read_bytes().splitlines()
    for line in bad:
        lines.insert(rng.randrange(len(lines) + 1), line)
    out.write_bytes(b"\n".join(lines) + b"\n")
