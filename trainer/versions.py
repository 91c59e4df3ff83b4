"""Version metadata: the status lifecycle and ``version.json``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

VERSION_PREFIX = "model_v"
VERSION_PATTERN = re.compile(rf"^{VERSION_PREFIX}(\d+)$")


class VersionStatus(StrEnum):
    """Where a registered version stands."""

    TRAINED = "trained"
    GATED_OUT = "gated_out"
    CANARY = "canary"
    ACTIVE = "active"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


#: Allowed status changes; gated_out, retired and rolled_back are final.
TRANSITIONS: dict[VersionStatus, frozenset[VersionStatus]] = {
    VersionStatus.TRAINED: frozenset(
        {VersionStatus.CANARY, VersionStatus.ACTIVE, VersionStatus.RETIRED}
    ),
    VersionStatus.GATED_OUT: frozenset(),
    VersionStatus.CANARY: frozenset(
        {VersionStatus.ACTIVE, VersionStatus.ROLLED_BACK, VersionStatus.RETIRED}
    ),
    VersionStatus.ACTIVE: frozenset({VersionStatus.RETIRED, VersionStatus.ROLLED_BACK}),
    VersionStatus.RETIRED: frozenset(),
    VersionStatus.ROLLED_BACK: frozenset(),
}


def version_name(number: int) -> str:
    """``model_v{number}``."""
    return f"{VERSION_PREFIX}{number}"


def version_number(name: str) -> int | None:
    """The N of ``model_vN``, or None for any other name."""
    match = VERSION_PATTERN.match(name)
    return int(match.group(1)) if match else None


class VersionInfo(BaseModel):
    """The content of ``version.json``."""

    name: str
    parent: str | None = None
    base_model: dict[str, str] = Field(description="name, source, sha256 of the base weights.")
    created_at: AwareDatetime
    status: VersionStatus
    dataset_sha256: str | None = None
    gate_passed: bool = False
    status_changed_at: AwareDatetime | None = None

    @property
    def number(self) -> int:
        """N of ``model_vN``."""
        return version_number(self.name) or 0

    def row(self, *, path: str) -> dict[str, Any]:
        """The ``model_versions`` warehouse row mirroring this version."""
        return {
            "version": self.name,
            "version_number": self.number,
            "parent": self.parent or "",
            "base_model": self.base_model.get("name", ""),
            "base_model_sha256": self.base_model.get("sha256", ""),
            "status": self.status.value,
            "gate_passed": self.gate_passed,
            "dataset_sha256": self.dataset_sha256 or "",
            "path": path,
            "created_at": self.created_at,
            "updated_at": self.status_changed_at or self.created_at,
        }


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time (ClickHouse hands back naive UTC datetimes)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
