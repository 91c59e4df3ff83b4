"""A trained version in a test registry, mirrored to the warehouse, as a cycle leaves it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from analytics.warehouse import Warehouse
from trainer.manifest import MANIFEST_FILE
from trainer.mirror import record_version
from trainer.registry import Registry, write_version
from trainer.versions import VersionInfo, VersionStatus


def register_version(
    warehouse: Warehouse,
    registry: Registry,
    *,
    parent: str | None,
    at: datetime,
    manifest: Mapping[str, Any] | None = None,
    gate_passed: bool = True,
    fill: Callable[[str, Path], None] | None = None,
) -> str:
    """Reserve the next ``model_vN``, stage it ``trained`` (created a day before ``at``, a
    minute apart per version), with ``manifest`` and whatever ``fill(name, staging)``
    writes (an adapter), and mirror it; returns its name."""
    name = registry.reserve()
    info = VersionInfo(
        name=name,
        parent=parent,
        base_model={"name": "tiny", "sha256": "0" * 64},
        created_at=at - timedelta(days=1) + timedelta(minutes=len(registry.versions())),
        status=VersionStatus.TRAINED,
        gate_passed=gate_passed,
    )
    with registry.staged(name) as staging:
        if fill is not None:
            fill(name, staging)
        write_version(staging, info)
        if manifest is not None:
            (staging / MANIFEST_FILE).write_bytes(orjson.dumps(manifest))
    record_version(warehouse, registry, name)
    return name
