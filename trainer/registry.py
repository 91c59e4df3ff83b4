"""The model registry: immutable ``model_vN/`` directories under one root.

A version name is reserved by creating ``.reserved/model_vN`` atomically
(``mkdir`` fails if it exists) and is never handed out again, even if the run
fails. A run writes into ``.staging/`` and is renamed to ``model_vN`` only on
success, so a failed or interrupted run registers nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainer.exceptions import RegistryError, StatusTransitionError
from trainer.versions import (
    TRANSITIONS,
    VersionInfo,
    VersionStatus,
    utc_now,
    version_name,
    version_number,
)

logger = logging.getLogger(__name__)

VERSION_FILE = "version.json"
RESERVED_DIR = ".reserved"
STAGING_DIR = ".staging"


class Registry:
    """Reserve, stage, commit and look up model versions under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _numbers(self) -> list[int]:
        names = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
        reserved = self.root / RESERVED_DIR
        if reserved.is_dir():
            names += [p.name for p in reserved.iterdir()]
        return [n for n in map(version_number, names) if n is not None]

    def reserve(self) -> str:
        """Allocate the next fresh ``model_vN`` name (atomic; safe across processes)."""
        (self.root / RESERVED_DIR).mkdir(parents=True, exist_ok=True)
        number = max(self._numbers(), default=0) + 1
        while True:
            try:
                (self.root / RESERVED_DIR / version_name(number)).mkdir()
            except FileExistsError:
                number += 1
                continue
            return version_name(number)

    @contextmanager
    def staged(self, name: str) -> Iterator[Path]:
        """A staging directory that becomes ``model_vN`` when the block exits cleanly."""
        if not (self.root / RESERVED_DIR / name).is_dir():
            msg = f"{name} was not reserved in {self.root}: call Registry.reserve() first"
            raise RegistryError(msg)
        (self.root / STAGING_DIR).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root / STAGING_DIR))
        try:
            yield staging
            if not (staging / VERSION_FILE).is_file():
                msg = f"staged {name} has no {VERSION_FILE}; refusing to register it"
                raise RegistryError(msg)
            os.rename(staging, self.root / name)
            logger.info("registered %s", name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def path(self, name: str) -> Path:
        """The directory of a registered version."""
        path = self.root / name
        if version_number(name) is None or not (path / VERSION_FILE).is_file():
            msg = f"no registered version {name!r} in {self.root}"
            raise RegistryError(msg)
        return path

    def get(self, name: str) -> VersionInfo:
        """The ``version.json`` of a registered version."""
        return VersionInfo.model_validate_json((self.path(name) / VERSION_FILE).read_bytes())

    def versions(self) -> list[VersionInfo]:
        """Every registered version, oldest first."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if (p / VERSION_FILE).is_file()]
        found = [self.get(n) for n in names if version_number(n) is not None]
        return sorted(found, key=lambda info: info.number)

    def latest(self, status: VersionStatus) -> VersionInfo | None:
        """The newest version with ``status`` (e.g. the active one, a cycle's parent)."""
        matching = [v for v in self.versions() if v.status is status]
        return matching[-1] if matching else None

    def set_status(self, name: str, status: VersionStatus) -> VersionInfo:
        """Move a version along its lifecycle; only ``version.json`` is rewritten."""
        info = self.get(name)
        if status not in TRANSITIONS[info.status]:
            msg = f"{name}: {info.status} -> {status} is not allowed"
            raise StatusTransitionError(msg)
        updated = info.model_copy(update={"status": status, "status_changed_at": utc_now()})
        write_version(self.path(name), updated)
        return updated

    def row(self, name: str) -> dict[str, Any]:
        """The ``model_versions`` warehouse row of a registered version."""
        return self.get(name).row(path=str(self.path(name).resolve()))


def write_version(directory: Path, info: VersionInfo) -> None:
    """Write ``version.json`` atomically."""
    tmp = directory / f".{VERSION_FILE}.tmp"
    tmp.write_text(info.model_dump_json(indent=2))
    os.replace(tmp, directory / VERSION_FILE)
