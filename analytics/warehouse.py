"""The warehouse: one clickhouse-connect client for every query and insert.

The same code talks to the in-process chdb engine (``chdb:///path``, embedded
mode: one owner process per path) and to a ClickHouse server
(``http://host:8123``). Blocking calls go through :meth:`Warehouse.run`, a single
worker thread, so async callers never block their loop and the embedded engine
sees one caller at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

from analytics import schema
from analytics.cluster_ddl import ClusterDDL
from analytics.exceptions import WarehouseError, WarehouseLockedError, WarehouseRefusedError
from analytics.rows import ENCODED_FORMAT, EncodedRows
from loraloop.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

EVENT_TABLES = ("turns", "feedback", "handoffs", "qa_verdicts", "outcomes", "user_profiles")
"""Raw event tables, one row per event_id."""

LOOP_TABLES = (
    "dead_letters",
    "signals",
    "conversations",
    "samples",
    "sample_transitions",
    "model_versions",
    "rollouts",
    "assignments",
    "late_events",
)


CLUSTER_SESSION_SETTINGS = {
    # JOIN / IN over two Distributed tables: ship the right side once (GLOBAL) instead of
    # refusing the query (ClickHouse's default, distributed_product_mode = 'deny').
    "distributed_product_mode": "global",
    # An insert into a Distributed table returns once the shards have the rows, so a
    # read right after a write (the stream, the console) sees them.
    "distributed_foreground_insert": 1,
}
"""Session settings of every query in cluster mode."""

ENGINE_MALLOC_ENV: Final = "JE_MALLOC_CONF"
"""How chdb's (prefixed) jemalloc takes its options."""

ENCODED_INSERT_SETTINGS: Final = {"date_time_input_format": "best_effort"}
"""Encoded rows carry RFC 3339 datetimes (``2026-11-01T10:00:00.5+00:00``)."""


DATA_REFUSAL_CODES: Final = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    }
)
"""ClickHouse error codes that refuse an insert's data, so the same rows fail every time.

Everything else (the server down, a timeout, memory, too many parts, a missing table)
may heal, or needs an operator, and is retried rather than treated as bad data.
"""

_TOO_MANY_PARTITIONS: Final = (252, "Too many partitions for single INSERT block")


def is_data_refusal(error: BaseException) -> bool:
    """True when ``error`` (from clickhouse-connect) refuses the rows, not the moment."""
    code = getattr(error, "code", None)
    if not isinstance(code, int):
        return False
    if code == _TOO_MANY_PARTITIONS[0]:  # the same code also means "too many parts": transient
        return _TOO_MANY_PARTITIONS[1] in str(error)
    return code in DATA_REFUSAL_CODES


def configure_engine_allocator(malloc_conf: str) -> None:
    """jemalloc options for the embedded engine, read once when chdb loads (JE_MALLOC_CONF).

    The engine's jemalloc keeps freed pages for seconds by default, and a worker that
    inserts every batch then grows by tens of MB that are not in use. An existing
    JE_MALLOC_CONF wins; once chdb is loaded nothing changes.
    """
    if not malloc_conf:
        return
    if "chdb" in sys.modules:
        if os.environ.get(ENGINE_MALLOC_ENV) != malloc_conf:
            logger.debug(
                "chdb is already loaded: %s=%s not applied", ENGINE_MALLOC_ENV, malloc_conf
            )
        return
    os.environ.setdefault(ENGINE_MALLOC_ENV, malloc_conf)


def _open_client(dsn: str, database: str | None, *, cluster: bool = False) -> Client:
    kwargs: dict[str, Any] = {"dsn": dsn}
    if database:
        kwargs["database"] = database
    if cluster:
        kwargs["settings"] = dict(CLUSTER_SESSION_SETTINGS)
    try:
        return clickhouse_connect.get_client(**kwargs)
    except Exception as e:
        text = str(e)
        if dsn.startswith("chdb:") and "already initialized" in text:
            msg = (
                f"this process already has another embedded warehouse open, so it cannot open "
                f"{dsn}: chdb serves one store per process; close the other one first"
            )
            raise WarehouseError(msg) from e
        if dsn.startswith("chdb:") and ("lock" in text.lower() or "used by" in text.lower()):
            msg = (
                f"the embedded warehouse {dsn} is held by another process "
                "(a running `loraloop up`?); stop it, or query through its web API"
            )
            raise WarehouseLockedError(msg) from e
        msg = f"cannot open ClickHouse at {dsn}: {e}; check LORALOOP_CLICKHOUSE_DSN"
        raise WarehouseError(msg) from e


def cluster_ddl(settings: Settings) -> ClusterDDL | None:
    """The cluster-mode DDL rewriter of ``settings`` (``None`` without a cluster)."""
    warehouse = settings.warehouse
    if not warehouse.cluster:
        return None
    return ClusterDDL(
        cluster=warehouse.cluster,
        database=warehouse.database,
        replication_path=warehouse.replication_path,
    )


def migration_ddl(settings: Settings) -> str:
    """Every statement ``loraloop migrate`` runs with these settings (``--print-ddl``)."""
    params = {"TEXT_TTL_DAYS": str(settings.warehouse.text_ttl_days)}
    return schema.render(params, cluster=cluster_ddl(settings))


class Warehouse:
    """A connected ClickHouse database with the loraloop schema."""

    def __init__(
        self, client: Client, *, dsn: str, database: str, cluster: ClusterDDL | None = None
    ) -> None:
        self._client = client
        self.dsn = dsn
        self.database = database
        self.cluster = cluster
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-read")
        # Most calls go through the warehouse thread; a lock also covers callers on other
        # threads (e.g. sync web handlers), since the embedded engine is one session.
        self._lock = threading.RLock()
        # Column types per table, read once: without them clickhouse-connect runs
        # DESCRIBE TABLE before every insert (one more statement per table per batch).
        self._column_types: dict[str, dict[str, str]] = {}

    @classmethod
    def connect(cls, *, dsn: str, database: str, cluster: ClusterDDL | None = None) -> Warehouse:
        """Open ``dsn`` and make sure ``database`` exists (no tables are created).

        With ``cluster``, the database is created ON CLUSTER and migrations write
        Replicated and Distributed tables (see :mod:`analytics.cluster_ddl`).
        """
        if dsn.startswith("chdb:") and cluster is not None:
            msg = (
                f"LORALOOP_WAREHOUSE__CLUSTER={cluster.cluster} needs a ClickHouse server "
                "(LORALOOP_CLICKHOUSE_DSN=http://host:8123), not the embedded engine"
            )
            raise WarehouseError(msg)
        if dsn.startswith("chdb://"):
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        bootstrap = _open_client(dsn, None)
        create = (
            cluster.create_database()
            if cluster is not None
            else f"CREATE DATABASE IF NOT EXISTS `{database}`"
        )
        try:
            bootstrap.command(create)
        except Exception as e:
            msg = f"cannot create database {database!r} at {dsn}: {e}"
            raise WarehouseError(msg) from e
        if dsn.startswith("chdb:"):
            client = bootstrap
            client.database = database
        else:
            bootstrap.close()
            client = _open_client(dsn, database, cluster=cluster is not None)
        return cls(client, dsn=dsn, database=database, cluster=cluster)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Warehouse:
        """Connect as configured and, by default, apply pending migrations."""
        if settings.embedded_warehouse:
            configure_engine_allocator(settings.warehouse.embedded_malloc_conf)
        warehouse = cls.connect(
            dsn=settings.effective_clickhouse_dsn,
            database=settings.warehouse.database,
            cluster=cluster_ddl(settings),
        )
        if migrate:
            warehouse.migrate(text_ttl_days=settings.warehouse.text_ttl_days)
        return warehouse

    def migrate(self, *, text_ttl_days: int) -> list[str]:
        """Apply pending migrations; returns the names applied (empty when up to date)."""
        applied = schema.apply_all(
            self, {"TEXT_TTL_DAYS": str(text_ttl_days)}, cluster=self.cluster
        )
        self._column_types.clear()
        return applied

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        try:
            with self._lock:
                return self._client.command(sql, parameters=parameters)
        except Exception as e:
            msg = f"ClickHouse refused a statement: {e}"
            raise WarehouseError(msg) from e

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        """Run a parameterized query (``{name:Type}`` placeholders, never string-built)."""
        try:
            with self._lock:
                return self._client.query(sql, parameters=parameters)
        except Exception as e:
            msg = f"ClickHouse query failed: {e}"
            raise WarehouseError(msg) from e

    def insert(
        self, table: str, rows: Sequence[Sequence[Any]], *, column_names: Sequence[str]
    ) -> int:
        """Insert rows (one sequence per row, in ``column_names`` order); returns rows written."""
        if not rows:
            return 0
        try:
            with self._lock:
                types = self._types_of(table)
                summary = self._client.insert(
                    table,
                    rows,
                    column_names=list(column_names),
                    column_type_names=[types[name] for name in column_names],
                )
        except Exception as e:
            msg = f"insert into {table} failed: {e}"
            raise WarehouseError(msg) from e
        return int(summary.written_rows)

    def insert_encoded(self, table: str, rows: EncodedRows, *, column_names: Sequence[str]) -> int:
        """Insert rows made by :func:`analytics.rows.encode_rows`; returns rows written."""
        if not rows.count:
            return 0
        try:
            with self._lock:
                self._client.raw_insert(
                    table,
                    list(column_names),
                    insert_block=rows.data,
                    fmt=ENCODED_FORMAT,
                    settings=ENCODED_INSERT_SETTINGS,
                )
        except Exception as e:
            msg = f"insert into {table} failed: {e}"
            if is_data_refusal(e):
                raise WarehouseRefusedError(msg, code=int(e.code)) from e  # type: ignore[attr-defined]
            raise WarehouseError(msg) from e
        return rows.count

    def _types_of(self, table: str) -> dict[str, str]:
        """``{column: ClickHouse type}`` of ``table``, cached until the next migration."""
        types = self._column_types.get(table)
        if types is None:
            described = self._client.query(f"DESCRIBE TABLE {table}")
            types = {str(row[0]): str(row[1]) for row in described.result_rows}
            self._column_types[table] = types
        return types

    def count(self, table: str, *, final: bool = True) -> int:
        """Rows in ``table`` as read with its dedupe semantics (FINAL)."""
        if table not in EVENT_TABLES + LOOP_TABLES:
            msg = f"unknown table {table!r}"
            raise WarehouseError(msg)
        suffix = " FINAL" if final else ""
        return int(self.query(f"SELECT count() FROM {table}{suffix}").result_rows[0][0])  # noqa: S608

    def table_counts(self) -> dict[str, int]:
        """Deduplicated row counts of every loraloop table."""
        return {t: self.count(t) for t in EVENT_TABLES + LOOP_TABLES}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking warehouse call on the warehouse thread (calls run in order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read on the reader thread, beside the warehouse thread.

        Statements still run one at a time (the lock), but a read waits for at
        most the statement in progress, not for every insert queued before it.
        Use it only for reads that do not depend on writes still queued.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        try:
            self._client.close()
        except Exception:  # the chdb backend may already be closed at interpreter exit
            logger.debug("warehouse client close failed", exc_info=True)
