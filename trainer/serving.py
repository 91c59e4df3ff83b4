"""What a serving layer should load now: the routing table built from the registry mirror.

The stable version is the newest ``active`` version (``base`` before any), the
canary is the newest version in ``canary`` status at its rollout's current step.
Used by the embedded stack to answer ``GET /v1/route``.
"""

from __future__ import annotations

from analytics.warehouse import Warehouse
from trainer.assignments import AssignmentRecorder, WarehouseAssignmentStore
from trainer.rollout import RolloutStore, routing_table
from trainer.rollout_config import RolloutSettings
from trainer.router import BASE_VERSION, Router, RoutingTable

_NEWEST_SQL = """
SELECT version FROM model_versions FINAL
WHERE status = {status:String}
ORDER BY created_at DESC
LIMIT 1
"""


def _newest(warehouse: Warehouse, status: str) -> str | None:
    rows = warehouse.query(_NEWEST_SQL, {"status": status}).result_rows
    return str(rows[0][0]) if rows else None


def current_table(warehouse: Warehouse, settings: RolloutSettings) -> RoutingTable:
    """The routing table the registry and the rollout log describe right now."""
    stable = _newest(warehouse, "active") or BASE_VERSION
    canary = _newest(warehouse, "canary")
    if canary is None:
        return RoutingTable(stable=stable)
    state = RolloutStore(warehouse, settings).load(canary)
    if state is None:
        return RoutingTable(stable=stable)
    return routing_table(state, settings)


def router_from_warehouse(warehouse: Warehouse, settings: RolloutSettings | None = None) -> Router:
    """A router serving the current table and recording every assignment."""
    rollout = settings or RolloutSettings()
    recorder = AssignmentRecorder(
        WarehouseAssignmentStore(warehouse),
        batch_size=rollout.record_batch_size,
        cache_size=rollout.recorder_cache_size,
    )
    return Router(current_table(warehouse, rollout), settings=rollout, recorder=recorder)
