"""The batched ClickHouse writer: retries with back-off until the batch is stored.

Agents call :meth:`WarehouseSink.write` and ack their events only after it
returns, so an offset is never committed past a row that was not written. A
failure is reported on the health endpoint (through :class:`Progress`) and
counted, never raised into the agent.

Two kinds of failure, two answers. What may heal (the warehouse down, a timeout) is
retried forever with capped back-off. What ClickHouse refuses as data (see
:func:`analytics.warehouse.is_data_refusal`: rows spanning too many partitions, a
value its column cannot hold) would be refused forever, so the block is bisected:
halves are written on their own, and a single row still refused is stored in
``dead_letters`` (``source_topic`` ``warehouse.<table>``) with the reason; the batch
goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from analytics.exceptions import WarehouseError, WarehouseRefusedError
from analytics.rows import COLUMNS, EncodedRows, dead_letter_row, encode_rows
from analytics.warehouse import Warehouse
from loraloop.events import DeadLetter
from loraloop.settings import StreamSettings
from streams import metrics
from streams.progress import Progress

logger = logging.getLogger(__name__)

DEAD_LETTER_TABLE: Final = "dead_letters"
REFUSED_ROW_TOPIC_PREFIX: Final = "warehouse."
"""``source_topic`` of a refused row's dead letter: ``warehouse.<table>``."""

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
        started = time.perf_counter()
        pending = {
            table: table_rows if isinstance(table_rows, EncodedRows) else encode_rows(table_rows)
            for table, table_rows in rows.items()
            if (table_rows.count if isinstance(table_rows, EncodedRows) else table_rows)
        }
        for table, table_rows in pending.items():
            await self._store(table, table_rows)
        self._progress.sink_error = None
        metrics.SINK_BATCH_SECONDS.labels(topic).observe(time.perf_counter() - started)

    async def _store(self, table: str, rows: EncodedRows) -> None:
        """Write ``rows``, bisecting a refused block down to the rows refused."""
        parts = [rows]
        while parts:
            part = parts.pop()
            try:
                await self._insert_healing(table, part)
            except WarehouseRefusedError as e:
                if part.count > 1:
                    first, second = part.halves()
                    parts += [second, first]  # popped first-half first: order kept
                    continue
                await self._dead_letter_row(table, part, e)

    async def _insert_healing(self, table: str, rows: EncodedRows) -> None:
        """Insert, retrying forever whatever may heal; a data refusal is raised."""
        delay = self._stream.retry_initial_s
        while True:
            try:
                await self._warehouse.run(self._insert, table, rows)
                return
            except WarehouseRefusedError:
                raise
            except WarehouseError as e:
                self._progress.sink_error = str(e)
                metrics.SINK_RETRIES.labels(table).inc()
                logger.warning("write to %s failed (%s); retrying in %.1fs", table, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._stream.retry_max_s)

    async def _dead_letter_row(self, table: str, row: EncodedRows, error: Exception) -> None:
        """Keep a refused row in ``dead_letters``; if even that is refused, log it whole."""
        metrics.ROWS_REFUSED.labels(table).inc()
        letter = DeadLetter.of_payload(
            source_topic=f"{REFUSED_ROW_TOPIC_PREFIX}{table}",
            partition=0,
            offset=int.from_bytes(hashlib.sha256(row.data).digest()[:7], "big"),
            raw=row.data,
            error=f"refused by the warehouse: {error}",
        )
        logger.error("the warehouse refused a row of %s; dead-lettered: %s", table, error)
        if table == DEAD_LETTER_TABLE:
            logger.error("refused dead-letter row, not stored: %r", row.data[:500])
            return
        await self._store(DEAD_LETTER_TABLE, encode_rows([dead_letter_row(letter)]))

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
