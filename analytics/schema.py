"""Schema migrations: versioned, re-runnable.

A migration is ``analytics/migrations/NNNN_name.sql``: statements separated by
``;`` at the end of a line, ``{{NAME}}`` placeholders filled from settings.
Applied versions are recorded in ``schema_migrations`` with the checksum of their
text, so a re-run applies only what is new and an edited, already-applied
migration is refused instead of silently diverging.

In cluster mode (:class:`analytics.cluster_ddl.ClusterDDL`) the same files are
rewritten at apply time into ON CLUSTER, Replicated and Distributed DDL; the
checksum stays that of the file, so the ledger is the same in both modes.
:func:`render` returns the statements a migration run would execute, for review.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING

from analytics.cluster_ddl import ClusterDDL, created_tables
from analytics.exceptions import MigrationError

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self, params: dict[str, str]) -> list[str]:
        text = self.text
        for key, value in params.items():
            text = text.replace("{{" + key + "}}", value)
        if "{{" in text:
            msg = f"migration {self.version:04d}_{self.name} has an unfilled placeholder"
            raise MigrationError(msg)
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in _STATEMENT_END.split("\n".join(lines)) if s.strip()]


def available() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files("analytics").joinpath("migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def _all_tables(params: dict[str, str]) -> set[str]:
    return created_tables(s for m in available() for s in m.statements(params))


def planned(
    params: dict[str, str], *, cluster: ClusterDDL | None = None
) -> list[tuple[Migration, list[str]]]:
    """Every migration with the statements it runs in this mode (single server or cluster)."""
    tables = _all_tables(params) if cluster is not None else set()
    plan = []
    for migration in available():
        statements = migration.statements(params)
        if cluster is not None:
            statements = cluster.transform(statements, tables)
        plan.append((migration, statements))
    return plan


def render(params: dict[str, str], *, cluster: ClusterDDL | None = None) -> str:
    """The DDL of the ledger and every migration, as a SQL script (``;``-terminated)."""
    parts = ["-- ledger", (cluster.ledger() if cluster else LEDGER_DDL.strip()) + ";"]
    for migration, statements in planned(params, cluster=cluster):
        parts.append(f"\n-- {migration.version:04d}_{migration.name}")
        parts += [f"{statement};" for statement in statements]
    return "\n".join(parts) + "\n"


def apply_all(
    warehouse: Warehouse, params: dict[str, str], *, cluster: ClusterDDL | None = None
) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    warehouse.command(cluster.ledger() if cluster else LEDGER_DDL)
    rows = warehouse.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    applied = {int(v): str(c) for v, c in rows}
    done = []
    for migration, statements in planned(params, cluster=cluster):
        label = f"{migration.version:04d}_{migration.name}"
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                msg = (
                    f"migration {label} was edited after it was applied; "
                    "add a new migration instead of changing an old one"
                )
                raise MigrationError(msg)
            continue
        for statement in statements:
            warehouse.command(statement)
        warehouse.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        logger.info("applied migration %s", label)
        done.append(label)
    return done
