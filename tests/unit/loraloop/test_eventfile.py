"""JSONL reading: every line checked, bad lines reported by number and field."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from loraloop.eventfile import LineError, ParsedLine, parse_line, read_events, strip_type
from tests.conftest import EXAMPLES


def test_example_file_is_entirely_valid() -> None:
    items = list(read_events(EXAMPLES))
    assert items
    assert all(isinstance(i, ParsedLine) for i in items)
    kinds = {i.kind.name for i in items if isinstance(i, ParsedLine)}
    assert kinds == {"turn", "feedback", "handoff", "qa", "outcome", "user"}


def test_bad_lines_are_reported_with_line_number_and_field(tmp_path: Path) -> None:
    good = {
        "type": "user",
        "event_id": "p1",
        "ts": "2026-01-01T00:00:00Z",
        "user_id": "u",
        "tier": "vip",
        "lifetime_value": 3,
    }
    lines = [
        json.dumps(good),
        "",
        "not json",
        json.dumps({**good, "type": "alien"}),
        json.dumps({**good, "tier": "gold"}),
        json.dumps([1, 2]),
        json.dumps({k: v for k, v in good.items() if k != "type"}),
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(lines) + "\n")
    items = list(read_events(path))
    assert isinstance(items[0], ParsedLine)
    assert items[0].key == "u"
    errors = [i for i in items if isinstance(i, LineError)]
    assert [e.line_no for e in errors] == [3, 4, 5, 6, 7]
    assert errors[1].field == "type"
    assert errors[2].field == "tier"
    assert errors[2].kind is not None
    assert str(errors[2]).startswith("line 5: tier:")
    assert errors[4].field == "type"


def test_invalid_utf8_is_a_line_error() -> None:
    item = parse_line(1, b'{"type": "user", "user_id": "\xff\xfe"}')
    assert isinstance(item, LineError)


def test_strip_type_removes_only_the_routing_field() -> None:
    raw = b'{"type":"user","user_id":"u"}'
    assert orjson.loads(strip_type(raw)) == {"user_id": "u"}
    assert strip_type(b"garbage") == b"garbage"
