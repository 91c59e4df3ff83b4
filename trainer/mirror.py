"""Mirror the model registry into the warehouse's ``model_versions`` table.

The registry directory is the source of truth; the table is its queryable copy
for analytics and the console. A row is written when a cycle registers a
version and again on every status change (``updated_at`` moves, and
``ReplacingMergeTree(updated_at)`` keeps the latest); :func:`sync_registry`
rewrites every version and is idempotent (the same rows again collapse into one).
Blocking; async callers go through ``Warehouse.run``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from trainer.registry import Registry
from trainer.versions import VersionInfo, VersionStatus

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

TABLE = "model_versions"
COLUMNS: tuple[str, ...] = (
    "version", "version_number", "parent", "base_model", "base_model_sha256", "status",
    "gate_passed", "dataset_sha256", "path", "metrics", "created_at", "updated_at",
)  # fmt: skip

METRICS_FILE = "metrics.json"
GATE_FILE = "gate.json"
_BEHAVIOUR_KEYS = (
    "paired", "pooled", "baseline", "skipped", "targeted", "decisive", "claimed",
)  # fmt: skip
_TRAIN_KEYS = ("steps", "train_samples", "tokens", "seconds", "tokens_per_s", "device", "bf16")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def metrics_summary(version_dir: Path) -> dict[str, Any]:
    """The training summary and the gate verdict of a version (``metrics`` column)."""
    train = _read_json(version_dir / METRICS_FILE)
    summary = {key: train[key] for key in _TRAIN_KEYS if key in train}
    losses = train.get("losses") or []
    if losses:
        summary["first_loss"], summary["final_loss"] = losses[0], losses[-1]
    return {"train": summary, "gate": gate_summary(_read_json(version_dir / GATE_FILE))}


def gate_summary(gate: dict[str, Any]) -> dict[str, Any]:
    """A gate.json with its behaviour section's numbers lifted to the top level.

    ``paired`` (per problem type), ``pooled``, ``baseline``, ``skipped``, ``targeted``,
    ``decisive`` and ``claimed`` sit next to ``passed``, ``reasons`` and ``numbers``;
    ``behaviour`` stays as it is (its per-prompt records included). A gate.json
    without ``behaviour`` (older versions) is passed through.
    """
    behaviour = gate.get("behaviour")
    if not isinstance(behaviour, dict):
        return gate
    return gate | {key: behaviour[key] for key in _BEHAVIOUR_KEYS if key in behaviour}


def version_row(registry: Registry, name: str) -> list[Any]:
    """The ``model_versions`` row of a registered version, in :data:`COLUMNS` order."""
    row = registry.row(name)
    row["metrics"] = orjson.dumps(
        metrics_summary(registry.path(name)), option=orjson.OPT_SORT_KEYS
    ).decode()
    return [row[column] for column in COLUMNS]


def record_version(warehouse: Warehouse, registry: Registry, name: str) -> None:
    """Write the current row of ``name``."""
    warehouse.insert(TABLE, [version_row(registry, name)], column_names=COLUMNS)
    logger.info("mirrored %s into %s", name, TABLE)


def set_status(
    warehouse: Warehouse, registry: Registry, name: str, status: VersionStatus
) -> VersionInfo:
    """Change a version's status in the registry, then mirror the new row."""
    info = registry.set_status(name, status)
    record_version(warehouse, registry, name)
    return info


def sync_registry(warehouse: Warehouse, registry: Registry) -> int:
    """Write the row of every registered version; returns how many (idempotent)."""
    rows = [version_row(registry, info.name) for info in registry.versions()]
    warehouse.insert(TABLE, rows, column_names=COLUMNS)
    return len(rows)
