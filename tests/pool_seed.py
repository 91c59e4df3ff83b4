"""Seed the pool's inputs (samples, turns, signals, handoffs) as capture would write them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.rows import COLUMNS, SAMPLE_COLUMNS
from analytics.warehouse import Warehouse

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PII_PHONE = "13812345678"
PII_EMAIL = "li.wei@example.com"


@contextmanager
def fresh_warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    """A migrated embedded warehouse in ``tmp_path``, closed at the end."""
    warehouse = Warehouse.connect(dsn=f"chdb://{tmp_path}/warehouse", database="loraloop")
    try:
        warehouse.migrate(text_ttl_days=3650)
        yield warehouse
    finally:
        warehouse.close()


def seed_sample(
    warehouse: Warehouse,
    conversation_id: str,
    *,
    detectors: tuple[str, ...] = ("complaint",),
    risk_weight: float = 2.0,
    model_version: str = "model_v1",
    handoff: bool = True,
    start: datetime = T0,
) -> str:
    """One captured conversation: turns (with PII), a signal, a handoff, the sample row."""
    turns = [
        ("user", f"My order is late, call me at {PII_PHONE} or {PII_EMAIL}"),
        ("assistant", "I promise it arrives tomorrow, guaranteed!"),
        ("user", "That is what you said yesterday. I want a refund."),
    ]
    if handoff:
        turns.append(("human_agent", "Sorry for the delay; I have escalated it to the courier."))
    rows = [
        [
            f"{conversation_id}-t{i}", start + timedelta(seconds=i), conversation_id, "u1", i,
            role, text, model_version if role == "assistant" else "", False,
        ]
        for i, (role, text) in enumerate(turns)
    ]  # fmt: skip
    warehouse.insert("turns", rows, column_names=COLUMNS["turns"])
    warehouse.insert(
        "signals",
        [
            [
                f"sig-{conversation_id}", start, detectors[0], conversation_id, "u1",
                model_version, 2, risk_weight, '{"lexicon": "refund"}',
            ]
        ],
        column_names=COLUMNS["signals"],
    )  # fmt: skip
    if handoff:
        warehouse.insert(
            "handoffs",
            [[f"{conversation_id}-h", start, conversation_id, "u1", 3, "user", "refund"]],
            column_names=COLUMNS["handoffs"],
        )
    sample_id = f"smp-{conversation_id}"
    warehouse.insert(
        "samples",
        [
            [
                sample_id, conversation_id, "u1", "captured", [], list(detectors), risk_weight,
                0.5, model_version, model_version, start, start, 4, "signal",
            ]
        ],
        column_names=SAMPLE_COLUMNS,
    )  # fmt: skip
    return sample_id
