"""``loraloop train`` (one cycle now, or ``--dry-run`` to describe the dataset) and
``loraloop trainer`` (the training service on its own, e.g. against a ClickHouse server).

Both open the warehouse themselves: with the embedded store, only while no
``loraloop up`` holds it (``open_warehouse`` says so, with its pid, and how to go on).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from loraloop.cli.common import (
    DataDir,
    console,
    fail,
    load_settings,
    open_warehouse,
    require_warehouse,
)
from loraloop.settings import Settings

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse
    from trainer.launcher import TrainProgress
    from trainer.service import CycleReport

DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Build and describe the dataset only: no training, nothing recorded."
    ),
]


@contextmanager
def _warehouse(settings: Settings) -> Iterator[Warehouse]:
    warehouse = open_warehouse(settings)
    try:
        yield warehouse
    finally:
        warehouse.close()


class _TrainingBar:
    """A rich progress bar fed by the worker's progress events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("building the dataset", total=None, loss="")

    def __call__(self, event: TrainProgress) -> None:
        loss = "" if event.loss is None else f"loss {event.loss:.4f}"
        gating = getattr(event, "stage", "train") == "gate"
        self.progress.update(
            self.task,
            description="gating: replies judged" if gating else "training",
            total=event.total_steps,
            completed=event.step,
            loss=loss,
        )


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console.stderr_console,
        transient=True,
    )


def _dataset_table(manifest: dict[str, Any]) -> Table:
    counts = manifest["counts"]
    table = Table(title=f"dataset ({counts['total']} samples)")
    for column in ("tier", "samples", "weight", "train weight share"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    shares = manifest["effective_weight_share"]
    for tier, weight in manifest["weights"].items():
        count = counts["per_tier"].get(tier, 0)
        table.add_row(tier, str(count), f"{weight:g}", f"{shares.get(tier, 0.0):.1%}")
    return table


def _split_table(manifest: dict[str, Any]) -> Table:
    counts = manifest["counts"]
    table = Table(title="splits per problem type")
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("problem types")
    for split, total in counts["per_split"].items():
        types = counts["per_split_problem_type"].get(split, {})
        table.add_row(split, str(total), ", ".join(f"{t} {n}" for t, n in types.items()) or "-")
    return table


def _describe(report: CycleReport) -> None:
    out = console.stdout_console
    if report.manifest:
        out.print(_dataset_table(report.manifest))
        out.print(_split_table(report.manifest))
        capped = " (problem weight capped)" if report.manifest["problem_weight_capped"] else ""
        out.print(f"sha256 {report.manifest['dataset_sha256']}{capped}", highlight=False)
        out.print(f"written to {report.dataset_dir}", highlight=False)
    for reason, count in Counter(report.skipped.values()).most_common():
        out.print(f"{count} pool samples left out: {reason}", highlight=False)


def _outcome(report: CycleReport) -> None:
    out = console.stdout_console
    head = f"cycle {report.cycle_id} ({report.reason}): {report.status.value}"
    if report.version is not None:
        gate = "passed" if report.version.gate_passed else "did not pass"
        parent = report.parent or "the base model"
        out.print(f"{head}: {report.version.name}, gate {gate} against {parent}", highlight=False)
    else:
        out.print(head, highlight=False)
    out.print(f"took {report.seconds:.1f}s", highlight=False)


_BASELINE_TIERS = ("core_baseline", "secondary_baseline", "candidate_baseline")
_TIERS = (*_BASELINE_TIERS, "problem")


def _pool_table(pool: dict[str, int]) -> Table:
    table = Table(title="pool")
    table.add_column("tier")
    table.add_column("samples", justify="right")
    for tier in _TIERS:
        table.add_row(tier, str(pool.get(tier, 0)))
    table.add_row("left out", str(pool.get("skipped", 0)))
    return table


def _next_steps(pool: dict[str, int], error: str | None) -> list[tuple[str, str]]:
    """(what is missing, what to do) for a pool that makes no dataset."""
    steps = []
    if not pool.get("problem"):
        steps.append((
            "problem samples with a corrected response (what the next version learns)",
            "label captured samples in the review console (its address: `loraloop status`) "
            "or with `loraloop samples label SAMPLE_ID --acceptance Risk --risk-level medium "
            "--problem-type TYPE --corrected-response TEXT`",
        ))  # fmt: skip
    if not any(pool.get(tier) for tier in _BASELINE_TIERS):
        steps.append((
            "baseline samples (answers the model must keep; a dataset is never only problems)",
            "an approver promotes labelled samples whose corrected answer is right into "
            "candidate_baseline: the console's sample page, or `loraloop samples approve "
            "SAMPLE_ID --from problem`; or imports an existing baseline (JSONL of "
            "conversations ending in their accepted answer, like examples/baseline.jsonl) "
            "with `loraloop samples import FILE`",
        ))  # fmt: skip
    if not steps and error:
        steps.append((
            error,
            "add baseline samples on more subjects: each prompt family goes to one split "
            "whole, so a few families can all land in the held-out split",
        ))  # fmt: skip
    return steps


def _describe_missing(report: CycleReport) -> None:
    """A dry run on a pool that makes no dataset: the pool, what is missing, what to do."""
    out = console.stdout_console
    out.print(_pool_table(report.pool))
    for reason, count in Counter(report.skipped.values()).most_common():
        out.print(f"{count} pool samples left out: {reason}", highlight=False)
    out.print(f"no dataset can be built yet: {report.error}", highlight=False, soft_wrap=True)
    for missing, todo in _next_steps(report.pool, report.error):
        out.print(f"  missing: {missing}", highlight=False, soft_wrap=True)
        out.print(f"  next: {todo}", highlight=False, soft_wrap=True)
    out.print("then run `loraloop train --dry-run` again", highlight=False, soft_wrap=True)


def train(data_dir: DataDir = None, dry_run: DryRun = False) -> None:
    """Run one training cycle now: pool → dataset → LoRA → gate → registry."""
    from trainer.cycle_log import CycleStatus
    from trainer.service import run_cycle_now
    from trainer.service_config import TrainerSettings

    settings = load_settings(data_dir)
    require_warehouse(settings)
    with _warehouse(settings) as warehouse:
        if dry_run:
            with console.stderr_console.status("building the dataset..."):
                report = run_cycle_now(warehouse, settings, TrainerSettings(), dry_run=True)
        else:
            with _progress() as progress:
                report = run_cycle_now(
                    warehouse, settings, TrainerSettings(), on_progress=_TrainingBar(progress)
                )
    if dry_run and report.status is CycleStatus.NO_DATA:
        _describe_missing(report)
        return
    _describe(report)
    if report.status is CycleStatus.FAILED:
        if report.manifest is None and _next_steps(report.pool, None):
            _describe_missing(report)  # the pool, not the machinery: say what to add
        fail(f"cycle {report.cycle_id} failed: {report.error}")
    if report.status is CycleStatus.NO_DATA:
        console.stdout_console.print(f"nothing to train: {report.error}", highlight=False)
        return
    if not dry_run:
        _outcome(report)


async def _serve_until_signal(warehouse: Warehouse, settings: Settings) -> None:
    from trainer.service import serve
    from trainer.service_config import TrainerSettings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Standalone, the service runs whatever LORALOOP_TRAINER__ENABLED says for `up`.
    trainer_settings = TrainerSettings().model_copy(update={"enabled": True})
    await serve(warehouse, settings, trainer_settings, stop)


def trainer(data_dir: DataDir = None) -> None:
    """Run the training service on its own until SIGINT/SIGTERM (e.g. next to a ClickHouse
    server given by LORALOOP_CLICKHOUSE_DSN)."""
    settings = load_settings(data_dir)
    with _warehouse(settings) as warehouse:
        console.stdout_console.print(
            f"[green]trainer service running[/] against {settings.effective_clickhouse_dsn} "
            "(Ctrl-C stops it; a running cycle is cancelled and recorded as failed)"
        )
        asyncio.run(_serve_until_signal(warehouse, settings))
    console.stdout_console.print("trainer service stopped")
