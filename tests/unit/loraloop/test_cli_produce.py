"""``loraloop produce``: a byte order mark costs no line; a text line is "not JSON"."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import streams.producer
import streams.topics
from loraloop.cli import app

USER = {
    "type": "user",
    "event_id": "p1",
    "ts": "2026-01-01T00:00:00Z",
    "user_id": "u",
    "tier": "vip",
    "lifetime_value": 3,
}


@dataclass
class _Sent:
    sent: int


class _Publisher:
    """Stands in for the Kafka publisher: counts what it is given."""

    published: list[Any] = []  # reset by the fixture

    def __init__(self, *_args: Any) -> None:
        pass

    async def __aenter__(self) -> _Publisher:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def publish(self, messages: Iterable[Any]) -> _Sent:
        batch = list(messages)
        _Publisher.published += batch
        return _Sent(len(batch))


@pytest.fixture
def no_kafka(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> type[_Publisher]:
    async def ensure_topics(*_args: Any) -> None:
        return None

    _Publisher.published = []
    monkeypatch.setattr(streams.topics, "ensure_topics", ensure_topics)
    monkeypatch.setattr(streams.producer, "EventPublisher", _Publisher)
    return _Publisher


def _produce(path: Path) -> Any:
    return CliRunner().invoke(app, ["produce", str(path), "--bootstrap", "127.0.0.1:9"])


def test_a_byte_order_mark_does_not_cost_the_first_line(
    no_kafka: type[_Publisher], tmp_path: Path
) -> None:
    path = tmp_path / "bom.jsonl"
    lines = [json.dumps(USER), json.dumps({**USER, "event_id": "p2"})]
    path.write_bytes(codecs.BOM_UTF8 + "\n".join(lines).encode())
    result = _produce(path)
    assert result.exit_code == 0, result.output
    assert len(no_kafka.published) == 2
    assert "0 bad lines" in result.output


def test_a_text_line_is_not_json_said_once(no_kafka: type[_Publisher], tmp_path: Path) -> None:
    path = tmp_path / "text.jsonl"
    path.write_text(f"{json.dumps(USER)}\nthis is a plain text line\n", encoding="utf-8")
    result = _produce(path)
    assert result.exit_code == 1
    assert "line 2: not JSON" in result.output
    assert "line line" not in result.output
    assert "expected 'true'" not in result.output
    assert len(no_kafka.published) == 1
