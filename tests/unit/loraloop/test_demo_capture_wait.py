"""The demo labels a batch only once capture has applied all of its events.

The gateway publishes a conversation's turns as it answers, so the conversation's row
exists before the demo's feedback, handoffs and outcomes (which may be what captures it)
are applied; waiting for the row alone left such samples unlabelled (251 of them in a
full demo run), and the comparison then refused its verdicts for low label coverage.
"""

from __future__ import annotations

from pathlib import Path

from analytics.rows import COLUMNS
from analytics.warehouse import Warehouse
from loraloop.cli.demo_run.check import _check_labelled
from loraloop.cli.demo_run.labelling import _APPLIED_SQL
from tests.pool_seed import T0, fresh_warehouse, seed_sample


def _conversation(warehouse: Warehouse, conversation_id: str, events: int) -> None:
    row = [
        conversation_id, "u1", "standard", "base", T0, T0, 2, [], False, "", [], 0, 0, 0,
        False, 0.0, events,
    ]  # fmt: skip
    warehouse.insert("conversations", [row], column_names=COLUMNS["conversations"])


def _applied(warehouse: Warehouse, events: dict[str, int]) -> int:
    ids = list(events)
    params = {"ids": ids, "events": [events[i] for i in ids]}
    return int(warehouse.query(_APPLIED_SQL, params).result_rows[0][0])


def test_a_conversation_counts_only_once_all_its_events_are_applied(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as warehouse:
        _conversation(warehouse, "a", 2)  # the gateway's two turns, the feedback not yet
        _conversation(warehouse, "b", 5)
        assert _applied(warehouse, {"a": 3, "b": 5}) == 1
        assert _applied(warehouse, {"b": 5, "a": 3}) == 1  # each id against its own count
        _conversation(warehouse, "a", 3)  # a newer row once the feedback is applied
        assert _applied(warehouse, {"a": 3, "b": 5}) == 2
        assert _applied(warehouse, {"a": 3, "b": 6, "c": 1}) == 1


def test_the_demo_check_names_samples_left_unlabelled(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as warehouse:
        problems: list[str] = []
        _check_labelled(warehouse, problems)
        assert problems == []
        seed_sample(warehouse, "c1")  # status captured, never labelled
        _check_labelled(warehouse, problems)
        assert problems == ["1 captured samples were never labelled by the reviewer"]
