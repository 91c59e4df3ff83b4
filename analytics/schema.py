"""Schema migrations: versioned, re-runnable.

A migration is ``analytics/migrations/NNNN_name.sql``: statements separated by
``;`` at the end of a line, ``{{NAME}}`` placeholders filled from settings.
Applied versions are recorded in ``schema_migrations`` with the checksum of their
text, so a re-run applies only what is new and an edited, already-applied
migration is refused instead of silently diverging.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING

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


def apply_all(warehouse: Warehouse, params: dict[str, str]) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    warehouse.command(LEDGER_DDL)
    rows = warehouse.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    applied = {int(v): str(c) for v, c in rows}
    done = []
    for migration in available():
        label = f"{migration.version:04d}_{migration.name}"
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                msg = (
                    f"migration {label} was edited after it was applied; "
                    "add a new migration instead of changing an old one"
                )
                raise MigrationError(msg)
            continue
        for statement in migration.statements(params):
            warehouse.command(statement)
        warehouse.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        logger.info("applied migration %s", label)
        done.append(label)
    return done
