"""The rollout service on a real embedded warehouse: start, roll back, advance to completion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.pool import approval_queue, propose
from analytics.pool_log import TRANSITION_COLUMNS, transition_row
from analytics.proposals import HoldReason, pending_proposals
from analytics.rows import COLUMNS, CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from analytics.warehouse import Warehouse
from loraloop.lifecycle import ActorKind, Role, SampleStatus, build_transition
from tests.pool_seed import fresh_warehouse
from tests.registry_seed import register_version
from trainer.mirror import set_status
from trainer.registry import Registry
from trainer.rollout import RolloutAction, RolloutDecision, RolloutStatus, RolloutStore
from trainer.rollout_config import RolloutSettings
from trainer.rollout_service import (
    RolloutService,
    ServiceAction,
    router_for_stack,
    serve_rollouts,
)
from trainer.rollout_service_config import RolloutServiceSettings
from trainer.router import Router, RoutingTable
from trainer.serving import current_table
from trainer.versions import VersionStatus

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TYPE = "missing_knowledge"
PER_USER = 2
LOOK = timedelta(hours=1)
SERVICE = RolloutServiceSettings(poll_interval_s=0.01, tick_interval_s=60.0)
TRAINED_IDS = ["smp-trained-0", "smp-trained-1"]
FAMILY_PROMPT = "How much is the course?"
MANIFEST = {
    "source_sample_ids": [*TRAINED_IDS, "smp-not-trained"],  # provenance only, not "trained"
    "trained_sample_ids": TRAINED_IDS,
    "families": {
        "fam-price": {
            "split": "train",
            "prompts": ["how much is the course"],
            "problem_types": [TYPE],
            "sample_ids": TRAINED_IDS,
        }
    },
}


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    # Targets from QA verdicts; every conversation is in the QA design (sampled, pi = 1)
    # and reviewed, so no labelling is needed to compare.
    monkeypatch.setenv("LORALOOP_RATES__TARGET_SOURCE", "qa")
    monkeypatch.setenv("LORALOOP_RATES__PROBLEM_TYPES", f'["{TYPE}"]')
    with fresh_warehouse(tmp_path) as wh:
        yield wh


@pytest.fixture
def registry(tmp_path: Path, warehouse: Warehouse) -> Registry:
    reg = Registry(tmp_path / "registry")
    _register(warehouse, reg, parent=None)
    set_status(warehouse, reg, "model_v1", VersionStatus.ACTIVE)
    return reg


def _register(
    warehouse: Warehouse, registry: Registry, *, parent: str | None, gate_passed: bool = True
) -> str:
    return register_version(
        warehouse, registry, parent=parent, at=T0, manifest=MANIFEST, gate_passed=gate_passed
    )


def _seed(
    warehouse: Warehouse,
    *,
    prefix: str,
    at: datetime,
    arms: dict[str, tuple[int, float]],
) -> None:
    """Users per arm (count, problem rate), each with PER_USER conversations after exposure,
    every one QA-reviewed (sampled with pi = 1)."""
    conversations, assignments = [], []
    for version, (users, rate) in arms.items():
        problems = round(users * rate)
        for i in range(users):
            user = f"{prefix}-{version}-u{i}"
            assignments.append([user, version, at])
            for k in range(PER_USER):
                ts = at + timedelta(minutes=1 + k)
                problem = i < problems
                conversations.append([
                    f"{user}c{k}", user, "standard", version, ts, ts, 4, [], False,
                    "Risk" if problem else "Accept", [TYPE] if problem else [], 0, 0, 0,
                    True, 1.0, 1,
                ])  # fmt: skip
    warehouse.insert("conversations", conversations, column_names=CONVERSATION_COLUMNS)
    warehouse.insert(
        "assignments", assignments, column_names=("user_id", "version", "first_exposure")
    )


def _seed_first_turns(warehouse: Warehouse, conversation_ids: list[str], at: datetime) -> None:
    """Each conversation opens with the family's prompt (a paraphrase of its case)."""
    rows = [
        [f"{cid}-t0", at, cid, cid.rsplit("c", 1)[0], 0, "user", FAMILY_PROMPT.upper(), "", False]
        for cid in conversation_ids
    ]
    warehouse.insert("turns", rows, column_names=COLUMNS["turns"])


def _pending_proposal(warehouse: Warehouse, version: str, sample_id: str = "smp-proposed") -> None:
    """A problem sample with an open proposal made on ``version``'s evidence."""
    row = [sample_id, f"conv-{sample_id}", "u", "captured", [TYPE], [], 1.0, 1.0, "model_v1",
           "model_v1", T0, T0, 1, "signal"]  # fmt: skip
    warehouse.insert("samples", [row], column_names=SAMPLE_COLUMNS)
    moves = [
        build_transition(
            sample_id, None, SampleStatus.CAPTURED, actor="sampler", role=Role.SYSTEM,
            actor_kind=ActorKind.SYSTEM, seq=0, ts=T0,
        ),
        build_transition(
            sample_id, SampleStatus.CAPTURED, SampleStatus.PROBLEM, actor="ann",
            role=Role.LABELLER, actor_kind=ActorKind.HUMAN, seq=1, ts=T0,
        ),
    ]  # fmt: skip
    warehouse.insert(
        "sample_transitions", [transition_row(m) for m in moves], column_names=TRANSITION_COLUMNS
    )
    propose(
        warehouse, sample_id, SampleStatus.CANDIDATE_BASELINE, actor="rollout",
        rule="canary", evidence={"version": version}, now=T0,
    )  # fmt: skip
    assert [p.sample_id for p in pending_proposals(warehouse, version)] == [sample_id]


def _seed_problem_samples(warehouse: Warehouse) -> None:
    rows = [
        [sid, f"conv-{sid}", "u", "problem", [TYPE], [], 1.0, 1.0, "model_v1", "model_v1",
         T0, T0, 1, "signal"]
        for sid in [*TRAINED_IDS, "smp-not-trained"]
    ]  # fmt: skip
    warehouse.insert("samples", rows, column_names=SAMPLE_COLUMNS)


def _service(
    warehouse: Warehouse, registry: Registry, steps: list[float]
) -> tuple[RolloutService, Router]:
    rollout = RolloutSettings(steps=steps, require_guardrails_non_inferior=False)
    router = Router(current_table(warehouse, rollout), settings=rollout)
    return RolloutService(warehouse, registry, router, settings=SERVICE), router


def _status(warehouse: Warehouse, registry: Registry, name: str) -> tuple[str, str]:
    """The registry's status and the ``model_versions`` mirror's."""
    rows = warehouse.query(
        "SELECT status FROM model_versions FINAL WHERE version = {v:String}", {"v": name}
    ).result_rows
    return registry.get(name).status.value, str(rows[0][0])


def test_a_trained_version_starts_a_canary(warehouse: Warehouse, registry: Registry) -> None:
    service, router = _service(warehouse, registry, [5.0, 50.0, 100.0])
    assert service.step(now=T0).action is ServiceAction.IDLE
    assert router.table == RoutingTable("model_v1")
    name = _register(warehouse, registry, parent="model_v1")
    report = service.step(now=T0)
    assert (report.action, report.version) == (ServiceAction.STARTED, name)
    assert _status(warehouse, registry, name) == ("canary", "canary")
    assert router.table == RoutingTable("model_v1", name, 5.0)
    state = RolloutStore(warehouse).load(name)
    assert state is not None
    assert (state.parent, state.status) == ("model_v1", RolloutStatus.RUNNING)
    # Not yet time for a look; a fresh process reading the warehouse routes the same way.
    assert service.step(now=T0 + timedelta(seconds=1)).action is ServiceAction.WAITING
    assert router_for_stack(warehouse, router.settings).table == router.table
    assert router_for_stack(warehouse) is router_for_stack(warehouse)


def test_stale_and_gated_out_versions_are_not_rolled_out(
    warehouse: Warehouse, registry: Registry
) -> None:
    service, router = _service(warehouse, registry, [5.0, 100.0])
    gated = _register(warehouse, registry, parent="model_v1", gate_passed=False)
    older = _register(warehouse, registry, parent="model_v1")
    stale = _register(warehouse, registry, parent="model_v0")
    report = service.step(now=T0)
    assert (report.action, report.version) == (ServiceAction.RETIRED, stale)
    assert _status(warehouse, registry, older) == ("retired", "retired")
    assert _status(warehouse, registry, stale) == ("retired", "retired")
    assert registry.get(gated).status is VersionStatus.TRAINED
    assert router.table == RoutingTable("model_v1")


def test_a_regression_rolls_back_and_stops_serving(
    warehouse: Warehouse, registry: Registry
) -> None:
    service, router = _service(warehouse, registry, [50.0, 100.0])
    name = _register(warehouse, registry, parent="model_v1")
    assert service.step(now=T0).action is ServiceAction.STARTED
    _pending_proposal(warehouse, name)
    _seed(warehouse, prefix="a", at=T0, arms={"model_v1": (300, 0.05), name: (300, 0.4)})
    report = service.step(now=T0 + LOOK)
    assert report.action is ServiceAction.LOOKED
    assert report.decision is not None
    assert report.decision.action is RolloutAction.ROLL_BACK
    assert TYPE in report.reason
    assert report.decision.withdrawal is not None
    assert len(report.decision.withdrawal.withdrawn) == 1
    assert pending_proposals(warehouse, name) == []
    assert approval_queue(warehouse) == ()
    assert _status(warehouse, registry, name) == ("rolled_back", "rolled_back")
    assert _status(warehouse, registry, "model_v1") == ("active", "active")
    assert router.table == RoutingTable("model_v1")
    assert all(router.route(f"user-{i}").version == "model_v1" for i in range(50))
    # The next step settles nothing new and starts nothing.
    assert service.step(now=T0 + 2 * LOOK).action is ServiceAction.IDLE


def test_solved_data_advances_to_completion(warehouse: Warehouse, registry: Registry) -> None:
    _seed_problem_samples(warehouse)
    service, router = _service(warehouse, registry, [25.0, 50.0, 100.0])
    name = _register(warehouse, registry, parent="model_v1")
    assert service.step(now=T0).action is ServiceAction.STARTED
    assert router.table == RoutingTable("model_v1", name, 25.0)
    _seed(warehouse, prefix="a", at=T0, arms={"model_v1": (600, 0.3), name: (200, 0.02)})
    # Users past the first 2 % of the arm had no problem: the family is fixed there.
    _seed_first_turns(warehouse, [f"a-{name}-u{i}c0" for i in range(10, 15)], T0)
    first = service.step(now=T0 + LOOK)
    assert first.decision is not None
    assert first.decision.action is RolloutAction.ADVANCE, first.reason
    assert router.table == RoutingTable("model_v1", name, 50.0)
    assert _status(warehouse, registry, name) == ("canary", "canary")
    step_start = T0 + LOOK + timedelta(minutes=1)
    _seed(warehouse, prefix="b", at=step_start, arms={"model_v1": (300, 0.3), name: (300, 0.02)})
    assert service.step(now=T0 + LOOK + timedelta(seconds=30)).action is ServiceAction.WAITING
    second = service.step(now=T0 + 2 * LOOK + timedelta(minutes=5))
    assert second.decision is not None
    assert second.decision.action is RolloutAction.COMPLETE, second.reason
    assert _status(warehouse, registry, name) == ("active", "active")
    assert _status(warehouse, registry, "model_v1") == ("retired", "retired")
    assert router.table == RoutingTable(name)
    assert current_table(warehouse, router.settings) == RoutingTable(name)
    proposed = warehouse.query(
        "SELECT sample_id, JSONExtractString(evidence, 'family', 'id'), "
        "JSONExtractUInt(evidence, 'family', 'conversations') "
        "FROM sample_transitions FINAL WHERE proposal ORDER BY sample_id"
    ).result_rows
    # Only what the version trained on (the manifest's trained_sample_ids, not its
    # source_sample_ids), with the family's canary numbers as evidence.
    assert proposed == [(sid, "fam-price", 5) for sid in TRAINED_IDS]
    assert second.decision.proposals is not None  # solved on the second look
    assert [t.sample_id for t in second.decision.proposals.written] == TRAINED_IDS
    assert second.decision.proposals.held == {HoldReason.NOT_TRAINED: ("smp-not-trained",)}


def test_a_rollback_recorded_by_hand_is_settled_with_its_withdrawals(
    warehouse: Warehouse, registry: Registry
) -> None:
    service, router = _service(warehouse, registry, [50.0, 100.0])
    name = _register(warehouse, registry, parent="model_v1")
    assert service.step(now=T0).action is ServiceAction.STARTED
    _pending_proposal(warehouse, name)
    store = service.controller.store
    state = store.load(name)
    assert state is not None
    rolled = replace(state, status=RolloutStatus.ROLLED_BACK, seq=state.seq + 1)
    store.record(RolloutDecision(RolloutAction.ROLL_BACK, rolled, "by hand"), now=T0 + LOOK)
    report = service.step(now=T0 + LOOK)
    assert report.action is ServiceAction.SETTLED
    assert _status(warehouse, registry, name) == ("rolled_back", "rolled_back")
    assert pending_proposals(warehouse, name) == []
    assert router.table == RoutingTable("model_v1")


def test_serve_rollouts_starts_a_canary_and_stops(warehouse: Warehouse, registry: Registry) -> None:
    name = _register(warehouse, registry, parent="model_v1")
    router = router_for_stack(warehouse)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve_rollouts(warehouse, SERVICE, router, stop, registry=registry)
        )
        for _ in range(500):
            if router.table.canary == name:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(run())
    assert router.table.canary == name
    assert registry.get(name).status is VersionStatus.CANARY


def test_serve_rollouts_survives_a_failing_step(
    warehouse: Warehouse, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    router = router_for_stack(warehouse)
    broken = Registry(registry.root.parent / "broken")
    (broken.root / "model_v1").mkdir(parents=True)
    (broken.root / "model_v1" / "version.json").write_text("{")  # unreadable version

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve_rollouts(warehouse, SERVICE, router, stop, registry=broken)
        )
        await asyncio.sleep(0.1)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(run())
    assert "rollout service step failed" in caplog.text


def test_disabled_service_only_waits(warehouse: Warehouse, registry: Registry) -> None:
    name = _register(warehouse, registry, parent="model_v1")
    router = router_for_stack(warehouse)
    off = RolloutServiceSettings(enabled=False)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve_rollouts(warehouse, off, router, stop, registry=registry))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(run())
    assert registry.get(name).status is VersionStatus.TRAINED


def test_tick_interval_must_not_be_shorter_than_the_poll() -> None:
    with pytest.raises(ValueError, match="TICK_INTERVAL_S"):
        RolloutServiceSettings(poll_interval_s=60, tick_interval_s=10)
