"""The adapter controller end to end: the rollout service drives two local gateway replicas.

Both replicas are real gateways on the tiny model (the ``local`` backend, which answers
vLLM's load / unload / models endpoints), reached over HTTP semantics through
``TestClient``; the rollout service runs on a real embedded warehouse and registry. One
replica's LoRA rank limit is below the new version's rank, so it cannot serve it: the
rollout must not start until it can, and a replica that loses a running canary's
adapter holds the rollout with a ``hold`` row in the rollout log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from analytics.warehouse import Warehouse
from gateway import GatewayParts, GatewaySettings, RouterSource, TrafficLog, create_gateway
from gateway.backends import LocalBackend
from tests.pool_seed import fresh_warehouse
from tests.registry_seed import register_version
from tests.unit.gateway.fakes import API_KEY, FakePublisher, table_router
from trainer.adapter_fleet import AdapterFleet, HttpReplica
from trainer.mirror import set_status
from trainer.registry import Registry
from trainer.rollout_config import RolloutSettings
from trainer.rollout_service import RolloutService, ServiceAction
from trainer.rollout_service_config import RolloutServiceSettings
from trainer.router import Router, RoutingTable
from trainer.serving import current_table
from trainer.versions import VersionStatus

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RANKS = {"model_v1": 4, "model_v2": 8}
SMALL_LIMIT = 4


def _register(
    warehouse: Warehouse, registry: Registry, checkpoint: Path, *, parent: str | None
) -> str:
    """A version whose directory holds a real PEFT adapter of the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def adapter(name: str, staging: Path) -> None:
        config = LoraConfig(r=RANKS[name], target_modules=["q_proj", "v_proj"])
        base = AutoModelForCausalLM.from_pretrained(checkpoint)
        get_peft_model(base, config).save_pretrained(staging)

    manifest = {"trained_sample_ids": []}
    return register_version(
        warehouse, registry, parent=parent, at=T0, manifest=manifest, fill=adapter
    )


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    with fresh_warehouse(tmp_path) as wh:
        yield wh


def _replica(
    stack: ExitStack, checkpoint: Path, registry: Registry, url: str, limit: int | None
) -> tuple[HttpReplica, LocalBackend]:
    backend = LocalBackend.from_checkpoint(
        checkpoint,
        registry_root=registry.root,
        max_new_tokens=4,
        adapter_cache_size=4,
        max_lora_rank=limit,
    )
    metrics = CollectorRegistry()
    parts = GatewayParts(
        settings=GatewaySettings(),
        registry=metrics,
        backend=backend,
        routes=RouterSource(table_router()),
        traffic=TrafficLog(lambda: FakePublisher(), queue_size=10, batch=10, registry=metrics),
        api_key=API_KEY,
    )
    client = stack.enter_context(TestClient(create_gateway(parts), base_url=url))
    return HttpReplica(url, api_key=API_KEY, client=client), backend


def _decisions(warehouse: Warehouse, version: str) -> list[str]:
    rows = warehouse.query(
        "SELECT decision FROM rollouts FINAL WHERE version = {v:String} ORDER BY ts",
        {"v": version},
    ).result_rows
    return [str(r[0]) for r in rows]


def test_a_rollout_starts_only_when_every_replica_serves_it_and_retired_versions_unload(
    warehouse: Warehouse, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    v1 = _register(warehouse, registry, tiny_checkpoint, parent=None)
    set_status(warehouse, registry, v1, VersionStatus.ACTIVE)
    v2 = _register(warehouse, registry, tiny_checkpoint, parent=v1)
    rollout = RolloutSettings(steps=[5.0, 100.0], require_guardrails_non_inferior=False)
    router = Router(current_table(warehouse, rollout), settings=rollout)
    with ExitStack() as stack:
        a, _ = _replica(stack, tiny_checkpoint, registry, "http://replica-a", None)
        b, small = _replica(stack, tiny_checkpoint, registry, "http://replica-b", SMALL_LIMIT)
        fleet = AdapterFleet([a, b], registry.path)
        service = RolloutService(
            warehouse,
            registry,
            router,
            settings=RolloutServiceSettings(poll_interval_s=0.01, tick_interval_s=3600),
            fleet=fleet,
        )

        held = service.step(now=T0)
        assert (held.action, held.version) == (ServiceAction.HELD, v2)
        reason = f"{v2} on http://replica-b: LoRA rank 8 is above the replica's max_lora_rank 4"
        assert reason in held.reason
        assert service.serving_problem == f"{v1}, {v2} cannot be served: {reason}"
        assert registry.get(v2).status is VersionStatus.TRAINED  # no rollout, no user routed
        assert _decisions(warehouse, v2) == []
        assert router.table == RoutingTable(v1)
        assert {v1, v2} <= a.models().names  # loaded where it can be, kept for the start
        assert v1 in b.models().names
        assert v2 not in b.models().names

        small.max_lora_rank = 16  # the operator raises the replica's limit
        started = service.step(now=T0 + timedelta(seconds=1))
        assert (started.action, started.version) == (ServiceAction.STARTED, v2)
        assert service.serving_problem is None
        assert router.table == RoutingTable(v1, v2, 5.0)
        for replica in (a, b):
            assert {v1, v2} <= replica.models().names

        # Replica b restarts without the canary and with its old limit: the rollout holds.
        b.unload(v2)
        small.max_lora_rank = SMALL_LIMIT
        for second in (2, 3):
            report = service.step(now=T0 + timedelta(seconds=second))
            assert report.action is ServiceAction.HELD
            assert "max_lora_rank 4" in report.reason
        assert _decisions(warehouse, v2) == ["start", "hold"]  # once per reason

        service.controller.roll_back(v2, reason="operator: replica b cannot serve it")
        service.step(now=T0 + timedelta(seconds=4))
        assert registry.get(v2).status is VersionStatus.ROLLED_BACK
        assert router.table == RoutingTable(v1)
        assert v2 not in a.models().names  # no route needs it: unloaded everywhere
        assert v1 in a.models().names
        assert v1 in b.models().names
