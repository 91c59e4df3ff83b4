"""The canary router: a sticky, nested split of users between two adapters.

Why: a user must stay on one version (or the comparison mixes arms), and raising the
canary share must only ever move users *to* the canary. Each user gets a bucket in
[0, 10000) from hash(salt, user_id); the canary serves buckets below share × 100, so
the canary's range at 5 % contains its range at 1 % (nested ranges). Allowlisted users
always get the canary. The adapter name is the version name, as vLLM multi-LoRA serving
loads ``model_vN`` (design: Training cycle, step 6).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from trainer.assignments import AssignmentRecorder
from trainer.rollout_config import FULL_ROLLOUT_PERCENT, RolloutSettings
from trainer.rollout_errors import RoutingError
from trainer.versions import utc_now

logger = logging.getLogger(__name__)

BASE_VERSION: Final = "base"
"""The version name served before any adapter is active: the base model alone."""
BUCKETS = 10_000
"""Hash buckets per user population: a share has a resolution of 0.01 %."""

_BUCKETS_PER_PERCENT = BUCKETS / FULL_ROLLOUT_PERCENT
_HASH_BYTES = 8


def bucket_of(user_id: str, salt: str) -> int:
    """The user's sticky bucket in [0, BUCKETS): a function of (salt, user_id) only."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:_HASH_BYTES], "big") % BUCKETS


def canary_buckets(share_percent: float) -> int:
    """How many buckets (from 0 up) a share of ``share_percent`` gives the canary."""
    return round(min(max(share_percent, 0.0), FULL_ROLLOUT_PERCENT) * _BUCKETS_PER_PERCENT)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """What the router serves: the stable version and, during a rollout, the canary."""

    stable: str
    canary: str | None = None
    share_percent: float = 0.0

    def __post_init__(self) -> None:
        if not self.stable or (self.canary is not None and not self.canary):
            msg = f"routing needs non-empty version names, got {self.stable!r}, {self.canary!r}"
            raise RoutingError(msg)
        if not 0 <= self.share_percent <= FULL_ROLLOUT_PERCENT:
            msg = f"canary share must lie in [0, 100] percent, got {self.share_percent}"
            raise RoutingError(msg)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where one request goes: the version, the LoRA adapter to load, canary or not."""

    version: str
    adapter_name: str
    is_canary: bool


class Router:
    """Routes user ids to versions; every decision is handed to the assignment recorder."""

    def __init__(
        self,
        table: RoutingTable,
        *,
        settings: RolloutSettings | None = None,
        recorder: AssignmentRecorder | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings or RolloutSettings()
        self._salt = self.settings.salt.get_secret_value()
        self._allowlist = frozenset(self.settings.allowlist)
        self._table = table
        self._recorder = recorder
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def table(self) -> RoutingTable:
        return self._table

    def update(self, table: RoutingTable) -> None:
        """Serve a new split (a step up, a rollback, a completed rollout) from now on."""
        with self._lock:
            self._table = table
        logger.info(
            "routing %s, canary %s at %.2f%%", table.stable, table.canary, table.share_percent
        )

    def assign(self, user_id: str) -> RouteDecision:
        """The decision for ``user_id`` without recording it."""
        if not user_id:
            msg = "user_id is empty: route needs the id of the user being served"
            raise RoutingError(msg)
        table = self._table
        canary = table.canary is not None and (
            user_id in self._allowlist
            or bucket_of(user_id, self._salt) < canary_buckets(table.share_percent)
        )
        version = table.canary if canary and table.canary is not None else table.stable
        return RouteDecision(version=version, adapter_name=version, is_canary=canary)

    def route(self, user_id: str) -> RouteDecision:
        """Route one request and record the assignment (first exposure kept)."""
        decision = self.assign(user_id)
        if self._recorder is not None:
            self._recorder.record(user_id, decision.version, self._clock())
        return decision

    def flush(self) -> int:
        """Write buffered assignments now; returns the rows written."""
        return self._recorder.flush() if self._recorder is not None else 0
