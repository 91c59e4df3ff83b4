"""Recording canary assignments: (user, version, first exposure) into ``assignments``.

Why: "counted per user after first exposure" needs the moment each user first met each
version, and the health checks need who was assigned where. The recorder buffers
decisions, keeps the earliest time per (version, user) and writes a batch at a time.
A pair already written (remembered in a bounded cache, else looked up in the warehouse
before each write) is not written again, so the stored time stays the first exposure.
The ``assignments`` table has no version column to break ties on merge, so queries read
``min(first_exposure)`` per (version, user) rather than trusting FINAL.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
"""(version, user_id)."""

ASSIGNMENT_COLUMNS = ("user_id", "version", "first_exposure")


class AssignmentStore(Protocol):
    """Where assignments live: the warehouse in production, a list in unit tests."""

    def recorded(self, pairs: Collection[Pair]) -> set[Pair]:
        """The pairs among ``pairs`` that are already stored."""

    def write(self, rows: Sequence[tuple[str, str, datetime]]) -> None:
        """Store (user_id, version, first_exposure) rows."""


class WarehouseAssignmentStore:
    """The ``assignments`` table."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def recorded(self, pairs: Collection[Pair]) -> set[Pair]:
        if not pairs:
            return set()
        result = self._warehouse.query(
            "SELECT DISTINCT version, user_id FROM assignments "
            "WHERE version IN {versions:Array(String)} AND user_id IN {users:Array(String)}",
            {
                "versions": sorted({v for v, _ in pairs}),
                "users": sorted({u for _, u in pairs}),
            },
        )
        found = {(str(v), str(u)) for v, u in result.result_rows}
        return found & set(pairs)

    def write(self, rows: Sequence[tuple[str, str, datetime]]) -> None:
        self._warehouse.insert("assignments", rows, column_names=ASSIGNMENT_COLUMNS)


class AssignmentRecorder:
    """Buffers assignments and writes each (version, user) pair once, at its earliest time."""

    def __init__(self, store: AssignmentStore, *, batch_size: int, cache_size: int) -> None:
        self._store = store
        self._batch_size = batch_size
        self._cache_size = cache_size
        self._pending: dict[Pair, datetime] = {}
        self._seen: OrderedDict[Pair, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, user_id: str, version: str, ts: datetime) -> None:
        """Note that ``user_id`` was served ``version`` at ``ts``; writes when a batch is full."""
        key = (version, user_id)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
            earliest = self._pending.get(key)
            self._pending[key] = ts if earliest is None else min(earliest, ts)
            full = len(self._pending) >= self._batch_size
        if full:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered; returns the rows written (pairs stored before are skipped)."""
        with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                known = self._store.recorded(batch.keys())
                rows = [(u, v, ts) for (v, u), ts in sorted(batch.items()) if (v, u) not in known]
                self._store.write(rows)
            except Exception:
                for key, ts in batch.items():  # keep them for the next flush
                    earlier = self._pending.get(key)
                    self._pending[key] = ts if earlier is None else min(earlier, ts)
                raise
            for key in batch:
                self._remember(key)
        logger.debug("recorded %d assignments (%d already stored)", len(rows), len(known))
        return len(rows)

    def _remember(self, key: Pair) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)
