"""The training service: watch the triggers, run one cycle at a time, record every outcome.

A cycle (design: Training cycle) in this process: read the pool from the
warehouse, build the dataset with PII masked (its held-out draws rotated by the
number of earlier cycles that trained and gated a version, the evaluation set
kept apart), write it and the evaluation set under ``<work dir>/<cycle_id>/``,
flag the samples the dataset says need a person's eyes again (a baseline sample
whose content recurred as a problem: ``not_learned``; a problem still unsolved
after enough cycles, now trained at a lower weight: ``downweighted``); then a
child process (:mod:`trainer.worker`) trains and gates from those files alone
(it never opens the warehouse); back here the registered version is mirrored
into ``model_versions`` and the cycle's outcome, with the manifest's sample
lists, into ``training_cycles``. Every warehouse call goes through
``Warehouse.run`` and the child is awaited, so the event loop of ``loraloop up``
never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analytics.flags import FlagKind, SampleFlag, read_flags, write_flags
from loraloop.pii import mask_pii
from loraloop.settings import Settings
from trainer.config import DatasetConfig, GateConfig, TrainConfig
from trainer.cycle_log import (
    CycleRecord,
    CycleStatus,
    close_interrupted,
    completed_cycles,
    new_cycle_id,
    write_cycle,
)
from trainer.dataset import build_dataset
from trainer.evalset import EvaluationSet, read_evaluation_set, write_evaluation_set
from trainer.exceptions import DatasetError
from trainer.launcher import TrainProgress, train_in_subprocess_async
from trainer.manifest import write_dataset
from trainer.mirror import record_version, sync_registry
from trainer.observe import observe
from trainer.pool import PoolRead, read_pool
from trainer.records import PoolSample, Tier
from trainer.registry import Registry
from trainer.service_config import TrainerSettings
from trainer.triggers import REASON_MANUAL, Trigger, due
from trainer.versions import VersionInfo, VersionStatus, utc_now

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

NO_PROBLEMS = "no current problem samples with a corrected response: nothing new to learn"
CANCELLED = "cancelled: the service stopped while the cycle ran"
FLAG_ACTOR = "trainer"

ProgressHook = Callable[[TrainProgress], None]


@dataclass(frozen=True)
class CycleConfigs:
    """The dataset mix, LoRA hyperparameters and gate of a cycle (default: the environment)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass(frozen=True)
class CycleReport:
    """What a cycle did; ``status`` is ``dry_run`` when nothing was trained or recorded."""

    cycle_id: str
    reason: str
    status: CycleStatus
    details: dict[str, Any] = field(default_factory=dict)
    pool: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    dataset_dir: Path | None = None
    manifest: dict[str, Any] | None = None
    parent: str | None = None
    version: VersionInfo | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class _Cycle:
    """The state of a running cycle (internal)."""

    warehouse: Warehouse
    settings: Settings
    trainer: TrainerSettings
    configs: CycleConfigs
    record: CycleRecord
    dry_run: bool
    on_progress: ProgressHook | None
    started: float = field(default_factory=time.perf_counter)
    pool: PoolRead = field(default_factory=PoolRead)
    dataset_dir: Path | None = None
    manifest: dict[str, Any] | None = None
    parent: str | None = None

    @property
    def registry(self) -> Registry:
        return Registry(self.trainer.registry_root(self.settings.data_dir))

    def report(self, status: CycleStatus, **extra: Any) -> CycleReport:
        return CycleReport(
            cycle_id=self.record.cycle_id,
            reason=self.record.reason,
            status=status,
            details=self.record.details,
            pool=self.pool.counts(),
            skipped=dict(self.pool.skipped),
            dataset_dir=self.dataset_dir,
            manifest=self.manifest,
            parent=self.parent,
            seconds=time.perf_counter() - self.started,
            **extra,
        )

    async def record_end(self, status: CycleStatus, **changes: Any) -> None:
        if self.dry_run:
            return
        sha = (self.manifest or {}).get("dataset_sha256") or ""
        counts = (self.manifest or {}).get("counts", {})
        final = self.record.with_manifest(self.manifest).finish(
            status, parent=self.parent or "", dataset_sha256=sha, dataset=counts, **changes
        )
        await self.warehouse.run(write_cycle, self.warehouse, final)


def _write_dataset(
    samples: list[PoolSample],
    config: DatasetConfig,
    out: Path,
    *,
    rotation: int,
    evaluation: EvaluationSet,
) -> dict[str, Any]:
    """Build the masked dataset, write it and the evaluation set; returns the manifest.

    CPU-bound: run in a thread.
    """
    built = build_dataset(
        samples, config=config, mask=mask_pii, rotation=rotation, evaluation=evaluation
    )
    manifest = write_dataset(built.rows, built.manifest, out)
    write_evaluation_set(evaluation, out)
    return manifest


def cycle_flags(
    manifest: dict[str, Any],
    samples: list[PoolSample],
    *,
    cycle_id: str,
    already_downweighted: set[str],
    config: DatasetConfig,
) -> list[SampleFlag]:
    """The flags a dataset asks for: ``not_learned`` baselines, newly ``downweighted`` problems."""
    now = utc_now()
    flags = [
        SampleFlag(
            sample_id=baseline,
            kind=FlagKind.NOT_LEARNED,
            reason=f"its content recurred as problem {problem}: the model did not learn it",
            actor=FLAG_ACTOR,
            ts=now,
            evidence={"cycle_id": cycle_id, "problem_id": problem},
        )
        for baseline, problem in sorted(manifest.get("flagged_baseline", {}).items())
    ]
    trained = {s.sample_id: s.times_trained for s in samples}
    flags += [
        SampleFlag(
            sample_id=sample_id,
            kind=FlagKind.DOWNWEIGHTED,
            reason=f"unsolved after {trained.get(sample_id, 0)} cycles",
            actor=FLAG_ACTOR,
            ts=now,
            evidence={
                "cycle_id": cycle_id,
                "times_trained": trained.get(sample_id, 0),
                "weight_factor": config.unsolved_weight_factor,
                "detail": reason,
            },
        )
        for sample_id, reason in sorted(manifest.get("downweighted", {}).items())
        if sample_id not in already_downweighted
    ]
    return flags


def _write_cycle_flags(cycle: _Cycle) -> int:
    """Write the cycle's flags (blocking: run through ``Warehouse.run``); returns how many."""
    manifest = cycle.manifest or {}
    candidates = sorted(manifest.get("downweighted", {}))
    existing = read_flags(cycle.warehouse, sample_ids=candidates, kind=FlagKind.DOWNWEIGHTED)
    flags = cycle_flags(
        manifest,
        cycle.pool.samples,
        cycle_id=cycle.record.cycle_id,
        already_downweighted={f.sample_id for f in existing} if candidates else set(),
        config=cycle.configs.dataset,
    )
    return write_flags(cycle.warehouse, flags)


async def _build(cycle: _Cycle) -> Path | None:
    """Read the pool and write the dataset; None when there is nothing to train on."""
    registry = cycle.registry
    cycle.pool = await cycle.warehouse.run(
        lambda: read_pool(
            cycle.warehouse,
            registry=registry,
            include_simulated=cycle.trainer.include_simulated_labels,
        )
    )
    if not any(s.status is Tier.PROBLEM for s in cycle.pool.samples):
        return None
    config = cycle.configs.dataset
    rotation = await cycle.warehouse.run(completed_cycles, cycle.warehouse)
    evaluation = await asyncio.to_thread(read_evaluation_set, config.evaluation_set)
    out = cycle.trainer.datasets_root(cycle.settings.data_dir) / cycle.record.cycle_id
    cycle.manifest = await asyncio.to_thread(
        lambda: _write_dataset(
            cycle.pool.samples, config, out, rotation=rotation, evaluation=evaluation
        )
    )
    cycle.dataset_dir = out
    if not cycle.dry_run:
        flagged = await cycle.warehouse.run(_write_cycle_flags, cycle)
        logger.info("cycle %s: %s sample flags written", cycle.record.cycle_id, flagged)
    return out


async def _train(cycle: _Cycle, dataset_dir: Path) -> CycleReport:
    """Train in the worker, mirror the version, record the outcome."""
    registry = cycle.registry
    active = await asyncio.to_thread(registry.latest, VersionStatus.ACTIVE)
    cycle.parent = active.name if active else None
    info = await train_in_subprocess_async(
        dataset_dir,
        registry_root=registry.root,
        data_dir=cycle.settings.data_dir,
        train_config=cycle.configs.train.model_copy(update={"progress": False}),
        gate_config=cycle.configs.gate,
        parent=cycle.parent,
        on_progress=cycle.on_progress,
    )
    await cycle.warehouse.run(record_version, cycle.warehouse, registry, info.name)
    status = CycleStatus.REGISTERED if info.gate_passed else CycleStatus.GATED_OUT
    await cycle.record_end(status, version=info.name)
    logger.info("cycle %s: %s %s", cycle.record.cycle_id, status, info.name)
    return cycle.report(status, version=info)


async def _run(cycle: _Cycle) -> CycleReport:
    if not cycle.dry_run:
        await cycle.warehouse.run(write_cycle, cycle.warehouse, cycle.record)
    try:
        dataset_dir = await _build(cycle)
        if dataset_dir is None:
            await cycle.record_end(CycleStatus.NO_DATA, error=NO_PROBLEMS)
            return cycle.report(CycleStatus.NO_DATA, error=NO_PROBLEMS)
        if cycle.dry_run:
            return cycle.report(CycleStatus.DRY_RUN)
        return await _train(cycle, dataset_dir)
    except asyncio.CancelledError:
        await cycle.record_end(CycleStatus.FAILED, error=CANCELLED)
        raise
    except DatasetError as error:  # the pool's state, not a crash: said without a traceback
        level = logging.INFO if cycle.dry_run else logging.WARNING
        logger.log(level, "cycle %s: no dataset: %s", cycle.record.cycle_id, error)
        await cycle.record_end(CycleStatus.FAILED, error=str(error))
        # A dry run reports it as what it is for the pool: no data to make a dataset from.
        status = CycleStatus.NO_DATA if cycle.dry_run else CycleStatus.FAILED
        return cycle.report(status, error=str(error))
    except Exception as error:  # every failure is recorded; the service loop goes on
        logger.exception("cycle %s failed", cycle.record.cycle_id)
        await cycle.record_end(CycleStatus.FAILED, error=str(error))
        return cycle.report(CycleStatus.FAILED, error=str(error))


async def run_cycle_async(
    warehouse: Warehouse,
    settings: Settings,
    trainer: TrainerSettings,
    *,
    reason: str = REASON_MANUAL,
    details: dict[str, Any] | None = None,
    dry_run: bool = False,
    configs: CycleConfigs | None = None,
    on_progress: ProgressHook | None = None,
) -> CycleReport:
    """One cycle; failures come back as a ``failed`` report (and row), never as an exception."""
    now = utc_now()
    cycle = _Cycle(
        warehouse=warehouse,
        settings=settings,
        trainer=trainer,
        configs=configs or CycleConfigs(),
        record=CycleRecord(new_cycle_id(now), reason, now, dict(details or {})),
        dry_run=dry_run,
        on_progress=on_progress,
    )
    logger.info("cycle %s starts (%s)%s", cycle.record.cycle_id, reason, " dry run" * dry_run)
    return await _run(cycle)


def run_cycle_now(
    warehouse: Warehouse,
    settings: Settings,
    trainer: TrainerSettings,
    *,
    reason: str = REASON_MANUAL,
    dry_run: bool = False,
    configs: CycleConfigs | None = None,
    on_progress: ProgressHook | None = None,
) -> CycleReport:
    """Run one cycle to its end from synchronous code (the CLI); see :func:`run_cycle_async`."""
    return asyncio.run(
        run_cycle_async(
            warehouse,
            settings,
            trainer,
            reason=reason,
            dry_run=dry_run,
            configs=configs,
            on_progress=on_progress,
        )
    )


async def _due(warehouse: Warehouse, trainer: TrainerSettings) -> Trigger | None:
    try:
        observations = await warehouse.run(observe, warehouse, trainer, utc_now())
    except Exception:  # a warehouse hiccup: log it and look again next poll
        logger.warning("could not check the training triggers", exc_info=True)
        return None
    return due(observations, trainer)


async def _startup(warehouse: Warehouse, registry: Registry) -> None:
    """Close cycles a killed process left ``running`` and mirror the registry."""
    try:
        closed = await warehouse.run(close_interrupted, warehouse)
        mirrored = await warehouse.run(sync_registry, warehouse, registry)
    except Exception:
        logger.warning("training service start-up bookkeeping failed", exc_info=True)
        return
    logger.info(
        "trainer service: %s interrupted cycles closed, %s versions mirrored", closed, mirrored
    )


async def _until_stopped(work: asyncio.Task[CycleReport], stop: asyncio.Event) -> None:
    """Await a cycle; cancel it (the worker is terminated) if ``stop`` is set first."""
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not work.done():
        work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    if not work.cancelled() and work.exception() is not None:
        logger.error("training cycle crashed", exc_info=work.exception())


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def serve(
    warehouse: Warehouse, settings: Settings, trainer: TrainerSettings, stop: asyncio.Event
) -> None:
    """Check the triggers every ``poll_interval_s`` and run due cycles until ``stop`` is set.

    One cycle at a time; a failed cycle is recorded and the loop goes on. When
    ``stop`` is set during a cycle, its worker is terminated and the cycle is
    recorded as failed (cancelled). With ``trainer.enabled`` false it only waits.
    """
    if not trainer.enabled:
        logger.info("trainer service disabled (LORALOOP_TRAINER__ENABLED=false)")
        await stop.wait()
        return
    await _startup(warehouse, Registry(trainer.registry_root(settings.data_dir)))
    while not stop.is_set():
        trigger = await _due(warehouse, trainer)
        if trigger is not None:
            logger.info("training cycle due: %s %s", trigger.reason, trigger.details)
            work = asyncio.create_task(
                run_cycle_async(
                    warehouse, settings, trainer, reason=trigger.reason, details=trigger.details
                )
            )
            await _until_stopped(work, stop)
        await _pause(stop, trainer.poll_interval_s)
