"""Cluster mode: the migrations' single-server DDL rewritten for a ClickHouse cluster.

The migration files stay single-server SQL (what the embedded engine and one server
run). With ``LORALOOP_WAREHOUSE__CLUSTER=<name>`` each statement is transformed when
it is applied:

- ``CREATE TABLE t (...) ENGINE = XMergeTree(v) ...`` becomes ``t_local ON CLUSTER``
  with ``ReplicatedXMergeTree('<path of t>', '{replica}', v)``, plus ``t ON CLUSTER``
  as ``Distributed(cluster, database, t_local, <sharding key>)``. The sharding key is
  taken from the ORDER BY (deduplication) key, so every revision of a row lands on one
  shard and ``FINAL`` stays exact: ``cityHash64(conversation_id)``, else ``sample_id``,
  else ``user_id``, else the hash of the whole key. Column TTLs stay on the local table.
- ``ALTER TABLE t ...`` alters ``t_local`` and ``t``, both ON CLUSTER.
- Views get ON CLUSTER and keep reading the Distributed tables.
- An incremental materialized view (``TO target ... FROM source``) runs on every shard
  from ``source_local`` into ``target_local``; a refreshable one (``REFRESH``) keeps
  reading the Distributed tables, one full snapshot per server.
- ``INSERT ... SELECT`` (backfills) runs once, through the Distributed tables.

Anything else is refused with :class:`MigrationError`, so a new kind of statement
gets a rule here instead of being applied to one server only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from analytics.exceptions import MigrationError

LOCAL_SUFFIX = "_local"
"""Suffix of the replicated table under each Distributed table."""

SHARD_COLUMNS = ("conversation_id", "sample_id", "user_id")
"""Preferred sharding columns, in order, when the table's ORDER BY key has them."""

_CREATE_TABLE = re.compile(r"^CREATE TABLE (IF NOT EXISTS )?(\w+)\s*\(", re.IGNORECASE)
_ENGINE = re.compile(r"^\s*ENGINE\s*=\s*(\w+)", re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER BY\s+(\([^()]*\)|\w+)", re.IGNORECASE)
_ALTER_TABLE = re.compile(r"^ALTER TABLE (\w+)\s+(.*)$", re.IGNORECASE | re.DOTALL)
_CREATE_VIEW = re.compile(
    r"^CREATE (OR REPLACE )?(MATERIALIZED )?VIEW (IF NOT EXISTS )?(\w+)\s+(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_MV_TO = re.compile(r"^TO\s+(\w+)\s+", re.IGNORECASE)
_INSERT = re.compile(r"^INSERT INTO\b", re.IGNORECASE)
_TTL = re.compile(r"\s+TTL\s+", re.IGNORECASE)


def _closing(text: str, start: int) -> int:
    """Index of the parenthesis closing the one at ``start`` (quotes respected)."""
    depth = 0
    quote = ""
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    msg = f"unbalanced parentheses in: {text[:80]}..."
    raise MigrationError(msg)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


@dataclass(frozen=True, slots=True)
class TableDDL:
    """The parts of a single-server ``CREATE TABLE`` that cluster mode rewrites."""

    name: str
    if_not_exists: bool
    columns: str
    engine: str
    engine_args: str
    tail: str

    @classmethod
    def parse(cls, statement: str) -> TableDDL:
        head = _CREATE_TABLE.match(statement)
        if head is None:
            msg = f"not a CREATE TABLE statement: {statement[:80]}"
            raise MigrationError(msg)
        open_at = head.end() - 1
        close_at = _closing(statement, open_at)
        rest = statement[close_at + 1 :]
        engine = _ENGINE.match(rest)
        if engine is None:
            msg = f"table {head[2]}: cluster mode needs an explicit ENGINE"
            raise MigrationError(msg)
        after = rest[engine.end() :]
        args = ""
        if after.lstrip().startswith("("):
            open_args = len(after) - len(after.lstrip())
            close_args = _closing(after, open_args)
            args = after[open_args + 1 : close_args].strip()
            after = after[close_args + 1 :]
        return cls(
            name=head[2],
            if_not_exists=bool(head[1]),
            columns=statement[open_at + 1 : close_at],
            engine=engine[1],
            engine_args=args,
            tail=after.strip(),
        )

    @property
    def order_by(self) -> list[str]:
        """Columns of the ORDER BY key (empty for ``tuple()`` or none)."""
        match = _ORDER_BY.search(self.tail)
        if match is None or match[1].lower() == "tuple":
            return []
        return [c.strip() for c in match[1].strip("()").split(",") if c.strip()]

    def sharding_key(self) -> str:
        """A key that keeps every row version of one ORDER BY key on one shard."""
        key = self.order_by
        for column in SHARD_COLUMNS:
            if column in key:
                return f"cityHash64({column})"
        return f"cityHash64({', '.join(key)})" if key else "rand()"

    def distributed_columns(self) -> str:
        """The column list without TTL clauses (a Distributed table stores nothing)."""
        columns = []
        for column in _split_top_level(self.columns):
            columns.append(_TTL.split(column, maxsplit=1)[0].strip())
        return ",\n    ".join(columns)


@dataclass(frozen=True, slots=True)
class ClusterDDL:
    """Rewrites single-server statements for cluster ``cluster`` and database ``database``."""

    cluster: str
    database: str
    replication_path: str = "/clickhouse/tables/{shard}/{database}/{table}"

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER `{self.cluster}`"

    def ledger(self) -> str:
        """The migrations ledger, one replicated copy on every server of the cluster.

        Its Keeper path has no {shard}, so every server sees every applied migration;
        the replica name joins shard and replica, unique across the cluster.
        """
        return (
            f"CREATE TABLE IF NOT EXISTS schema_migrations {self.on_cluster} (\n"
            "    version UInt32,\n    name String,\n    checksum String,\n"
            "    applied_at DateTime64(3, 'UTC')\n"
            ") ENGINE = ReplicatedReplacingMergeTree("
            "'/clickhouse/tables/{database}/schema_migrations', '{shard}-{replica}')\n"
            "ORDER BY version"
        )

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS `{self.database}` {self.on_cluster}"

    def transform(self, statements: Iterable[str], tables: set[str]) -> list[str]:
        """The cluster statements for ``statements``; ``tables`` names every table created
        by any migration (also earlier, already-applied ones)."""
        out: list[str] = []
        for statement in statements:
            out += self.transform_one(statement, tables)
        return out

    def transform_one(self, statement: str, tables: set[str]) -> list[str]:
        if _CREATE_TABLE.match(statement):
            return self._table(TableDDL.parse(statement))
        if alter := _ALTER_TABLE.match(statement):
            name, action = alter[1], alter[2]
            if name not in tables:
                msg = f"ALTER TABLE {name}: not a table created by a migration"
                raise MigrationError(msg)
            return [
                f"ALTER TABLE {name}{LOCAL_SUFFIX} {self.on_cluster} {action}",
                f"ALTER TABLE {name} {self.on_cluster} {action}",
            ]
        if view := _CREATE_VIEW.match(statement):
            return [self._view(view, tables)]
        if _INSERT.match(statement):
            return [statement]
        msg = (
            f"cluster mode has no rule for: {statement[:80]}...; "
            "add one to analytics/cluster_ddl.py"
        )
        raise MigrationError(msg)

    def _table(self, table: TableDDL) -> list[str]:
        if not table.engine.endswith("MergeTree") or table.engine.startswith("Replicated"):
            msg = f"table {table.name}: cluster mode replicates *MergeTree, not {table.engine}"
            raise MigrationError(msg)
        exists = "IF NOT EXISTS " if table.if_not_exists else ""
        local = f"{table.name}{LOCAL_SUFFIX}"
        path = self.replication_path.replace("{table}", table.name)
        args = ", ".join(a for a in (f"'{path}'", "'{replica}'", table.engine_args) if a)
        replicated = (
            f"CREATE TABLE {exists}{local} {self.on_cluster} ({table.columns}) "
            f"ENGINE = Replicated{table.engine}({args})\n{table.tail}"
        )
        distributed = (
            f"CREATE TABLE {exists}{table.name} {self.on_cluster} (\n"
            f"    {table.distributed_columns()}\n"
            f") ENGINE = Distributed('{self.cluster}', '{self.database}', '{local}', "
            f"{table.sharding_key()})"
        )
        return [replicated, distributed]

    def _view(self, view: re.Match[str], tables: set[str]) -> str:
        replace = view[1] or ""
        materialized, exists, name, body = view[2] or "", view[3] or "", view[4], view[5]
        to = _MV_TO.match(body)
        if materialized and to is not None:
            target = to[1]
            if target not in tables:
                msg = f"materialized view {name}: target {target} is not a migration's table"
                raise MigrationError(msg)
            select = body[to.end() :]
            for table in sorted(tables, key=len, reverse=True):
                select = re.sub(rf"\b(FROM|JOIN)\s+{table}\b", rf"\1 {table}{LOCAL_SUFFIX}", select)
            body = f"TO {target}{LOCAL_SUFFIX}\n{select}"
        return f"CREATE {replace}{materialized}VIEW {exists}{name} {self.on_cluster}\n{body}"


def created_tables(statements: Iterable[str]) -> set[str]:
    """Names of the tables that ``CREATE TABLE`` statements create."""
    return {m[2] for s in statements if (m := _CREATE_TABLE.match(s))}
