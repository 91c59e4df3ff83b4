"""The ``training_cycles`` table: why each cycle started and how it ended.

A cycle writes its row when it starts (status ``running``) and again when it
ends; ``ReplacingMergeTree(updated_at)`` keeps the last. The ended row carries
the dataset manifest's sample lists, kept apart: trained (the train split),
held out, baseline regression, dropped duplicates and evaluation-excluded. A row still ``running``
when the service starts belongs to a cycle that was killed: it is closed as
``failed``. Blocking; async callers go through ``Warehouse.run``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from trainer.versions import as_utc, utc_now

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

TABLE = "training_cycles"
COLUMNS: tuple[str, ...] = (
    "cycle_id", "reason", "details", "started_at", "finished_at", "status", "version", "parent",
    "dataset_sha256", "dataset", "error", "updated_at", "trained_ids", "heldout_ids",
    "regression_ids", "duplicate_ids", "evaluation_ids",
)  # fmt: skip
#: Column → the manifest key of the sample ids it stores.
ID_COLUMNS: dict[str, str] = {
    "trained_ids": "trained_sample_ids",
    "heldout_ids": "heldout_sample_ids",
    "regression_ids": "regression_sample_ids",
    "duplicate_ids": "duplicates_dropped",
    "evaluation_ids": "evaluation_excluded_ids",
}

INTERRUPTED = "interrupted: the service stopped before the cycle ended"


class CycleStatus(StrEnum):
    """Where a cycle stands."""

    RUNNING = "running"
    REGISTERED = "registered"
    GATED_OUT = "gated_out"
    FAILED = "failed"
    NO_DATA = "no_data"
    DRY_RUN = "dry_run"  # reported by a dry run, never written


#: Statuses of cycles that trained and gated a version: each one rotates the draws.
COMPLETED: tuple[str, ...] = (CycleStatus.REGISTERED.value, CycleStatus.GATED_OUT.value)


def new_cycle_id(now: datetime) -> str:
    """A unique, time-ordered id: ``20250101T120000-1a2b3c4d``."""
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class CycleRecord:
    """One cycle's row."""

    cycle_id: str
    reason: str
    started_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    status: CycleStatus = CycleStatus.RUNNING
    finished_at: datetime | None = None
    version: str = ""
    parent: str = ""
    dataset_sha256: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    trained_ids: list[str] = field(default_factory=list)
    heldout_ids: list[str] = field(default_factory=list)
    regression_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    evaluation_ids: list[str] = field(default_factory=list)

    def finish(self, status: CycleStatus, **changes: Any) -> CycleRecord:
        """The record of the ended cycle."""
        return replace(self, status=status, finished_at=utc_now(), **changes)

    def with_manifest(self, manifest: dict[str, Any] | None) -> CycleRecord:
        """The record with the sample lists of a dataset manifest (sorted)."""
        if not manifest:
            return self
        lists: dict[str, Any] = {
            column: sorted(manifest.get(key) or ()) for column, key in ID_COLUMNS.items()
        }
        return replace(self, **lists)

    def row(self) -> list[Any]:
        """The row in :data:`COLUMNS` order; ``updated_at`` is the last event's time."""
        values = {
            **self.__dict__,
            "status": self.status.value,
            "details": _json(self.details),
            "dataset": _json(self.dataset),
            "updated_at": self.finished_at or self.started_at,
        }
        return [values[column] for column in COLUMNS]


def write_cycle(warehouse: Warehouse, record: CycleRecord) -> None:
    """Write (or supersede) a cycle's row."""
    warehouse.insert(TABLE, [record.row()], column_names=COLUMNS)


def completed_cycles(warehouse: Warehouse) -> int:
    """How many recorded cycles trained and gated a version (registered or gated out)."""
    count = warehouse.query(
        f"SELECT count() FROM {TABLE} FINAL "  # noqa: S608 - constant name
        "WHERE has({statuses:Array(String)}, status)",
        {"statuses": list(COMPLETED)},
    ).result_rows[0][0]
    return int(count)


def last_cycle_started_at(warehouse: Warehouse) -> datetime | None:
    """When the newest recorded cycle started, or None when none was ever recorded."""
    count, latest = warehouse.query(
        f"SELECT count(), max(started_at) FROM {TABLE} FINAL"  # noqa: S608 - constant name
    ).result_rows[0]
    return as_utc(latest) if count else None


def close_interrupted(warehouse: Warehouse) -> int:
    """Mark rows still ``running`` as failed (their process died); returns how many."""
    rows = warehouse.query(
        f"SELECT cycle_id, reason, details, started_at FROM {TABLE} FINAL "  # noqa: S608
        "WHERE status = {running:String}",
        {"running": CycleStatus.RUNNING.value},
    ).result_rows
    for cycle_id, reason, details, started_at in rows:
        record = CycleRecord(str(cycle_id), str(reason), as_utc(started_at), orjson.loads(details))
        write_cycle(warehouse, record.finish(CycleStatus.FAILED, error=INTERRUPTED))
    return len(rows)
