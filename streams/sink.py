"""The batched ClickHouse writer: retries with back-off until the batch is stored.

Agents call :meth:`WarehouseSink.write` and ack their events only after it
returns, so an offset is never committed past a row that was not written. A
failure is reported on the health endpoint (through :class:`Progress`) and
counted, never raised into the agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from analytics.exceptions import WarehouseError
from analytics.rows import COLUMNS, EncodedRows, encode_rows
from analytics.warehouse import Warehouse
from loraloop.settings import StreamSettings
from streams import metrics
from streams.progress import Progress

logger = logging.getLogger(__name__)

T = TypeVar("T")
Rows = Sequence[Sequence[Any]] | EncodedRows
"""A table's rows for :meth:`WarehouseSink.write`: one sequence per row, or encoded."""


class WarehouseSink:
    """Writes row batches to the warehouse, retrying forever with capped back-off."""

    def __init__(self, warehouse: Warehouse, stream: StreamSettings, progress: Progress) -> None:
        self._warehouse = warehouse
        self._stream = stream
        self._progress = progress

    async def write(self, rows: Mapping[str, Rows], *, topic: str) -> None:
        """Store every table's rows (plain or already encoded); returns when all are written."""
        delay = self._stream.retry_initial_s
        started = time.perf_counter()
        pending = {
            table: table_rows if isinstance(table_rows, EncodedRows) else encode_rows(table_rows)
            for table, table_rows in rows.items()
            if (table_rows.count if isinstance(table_rows, EncodedRows) else table_rows)
        }
        while pending:
            table, table_rows = next(iter(pending.items()))
            try:
                await self._warehouse.run(self._insert, table, table_rows)
            except WarehouseError as e:
                self._progress.sink_error = str(e)
                metrics.SINK_RETRIES.labels(table).inc()
                logger.warning("write to %s failed (%s); retrying in %.1fs", table, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._stream.retry_max_s)
                continue
            del pending[table]
        self._progress.sink_error = None
        metrics.SINK_BATCH_SECONDS.labels(topic).observe(time.perf_counter() - started)

    async def retrying(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` until it stops raising WarehouseError (reads the sink depends on)."""
        delay = self._stream.retry_initial_s
        while True:
            try:
                return await fn(*args)
            except WarehouseError as e:
                self._progress.sink_error = str(e)
                logger.warning("warehouse read failed (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._stream.retry_max_s)

    async def run_on_warehouse(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(warehouse, *args)`` on the warehouse thread."""
        return await self._warehouse.run(fn, self._warehouse, *args)

    def _insert(self, table: str, rows: EncodedRows) -> int:
        return self._warehouse.insert_encoded(table, rows, column_names=COLUMNS[table])
