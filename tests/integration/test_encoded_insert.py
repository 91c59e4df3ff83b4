"""Rows encoded by orjson land exactly as clickhouse-connect's own inserts land them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from analytics.exceptions import WarehouseError
from analytics.rows import COLUMNS, EncodedRows, encode_rows
from analytics.warehouse import Warehouse

TS = datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=UTC)
EAST = TS.astimezone(timezone(timedelta(hours=8)))  # the same instant, another offset

ROWS: dict[str, list[list[Any]]] = {
    "turns": [
        ["e1", TS, "c1", "u1", 0, "user", '退款 "quoted" \\ back\nslash ✓', "", False],
        ["e2", EAST, "c1", "u1", 1, "assistant", "", "model_v1", True],
    ],
    "signals": [
        ["s1", TS, "complaint", "c1", "u1", "model_v1", None, 0.75, '{"a": [1, 2]}'],
        ["s2", EAST, "qa_flag", "c1", "u1", "", 3, 1.0, "{}"],
    ],
    "outcomes": [["o1", TS, "c1", "u1", "refund", 12.5], ["o2", TS, "c1", "u1", "cta_click", 0.0]],
}


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    wh = Warehouse.connect(dsn=f"chdb://{tmp_path}/warehouse", database="loraloop")
    try:
        wh.migrate(text_ttl_days=3650)
        wh.command("CREATE DATABASE IF NOT EXISTS native")
        for table in ROWS:
            wh.command(f"CREATE TABLE native.{table} AS loraloop.{table}")
        yield wh
    finally:
        wh.close()


@pytest.mark.parametrize("table", sorted(ROWS))
def test_encoded_rows_equal_native_inserts(warehouse: Warehouse, table: str) -> None:
    columns = COLUMNS[table]
    assert warehouse.insert_encoded(table, encode_rows(ROWS[table]), column_names=columns) == 2
    warehouse.insert(f"native.{table}", ROWS[table], column_names=columns)
    select = f"SELECT {', '.join(columns)} FROM {{db}}.{table} ORDER BY {columns[0]}"  # noqa: S608
    encoded = warehouse.query(select.format(db="loraloop")).result_rows
    native = warehouse.query(select.format(db="native")).result_rows
    assert encoded == native
    assert len(encoded) == 2


def test_a_malformed_encoded_row_is_a_warehouse_error_naming_the_table(
    warehouse: Warehouse,
) -> None:
    bad = EncodedRows(b'["e1", "not a time"]', 1)
    with pytest.raises(WarehouseError, match="insert into turns failed"):
        warehouse.insert_encoded("turns", bad, column_names=COLUMNS["turns"])
    assert warehouse.count("turns") == 0
