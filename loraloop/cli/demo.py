"""``loraloop demo``: the whole closed loop on the embedded stack, with simulated users.

Traffic from simulated users reaches the served model (SmolLM2-135M-Instruct and its
LoRA adapters; a tiny model with ``--fast``) through the canary router; their reactions,
QA verdicts and outcomes go through Kafka into the stack like production events. The
loop runs capture → labels → training → gate → canary → verdicts → proposals →
approvals (only with ``--approve-as``) for each cycle, then prints a summary and
writes ``report.html``, charts and ``summary.json`` (docs/demo.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from loraloop.cli.common import DataDir, console, load_settings

DEMO_DATA_DIR: Final = Path(".loraloop/demo")
REPORT_DIR: Final = "report"

DEMO_ENVIRONMENT: Final = {
    # Every flagged conversation is captured (p = 1), and one repeat is a follow-up:
    # the demo's traffic is small, and its users are impatient.
    "LORALOOP_DETECTORS__SAMPLER_BASE_RATE": "1.0",
    "LORALOOP_DETECTORS__REPEAT_MIN_TURNS": "1",
    "LORALOOP_DETECTORS__UNIFORM_QA_RATE": "0.05",
    "LORALOOP_TRAINER__ENABLED": "false",
    # The simulated users re-ask fixed prompts of a greedy model: a version's conversations
    # on one prompt are copies, so the comparison's clusters are opening prompts, not users.
    "LORALOOP_RATES__CLUSTER_BY": "opening_prompt",
    # The demo publishes a batch at once and then waits for capture: one quiet second says
    # the batch is complete (the 5 s default cost about 10 s a batch, twice a look).
    "LORALOOP_STREAM__WATERMARK_IDLE_S": "1",
}
"""Settings of other components the demo sets for its own process unless already set."""


def _environment(fast: bool) -> None:
    from loraloop.simulation import SimulationSettings

    sim = SimulationSettings()
    events = sim.fast_min_events_per_arm if fast else sim.min_events_per_arm
    defaults = {
        **DEMO_ENVIRONMENT,
        "LORALOOP_COMPARE__MIN_EVENTS_PER_ARM": str(events),
        "LORALOOP_COMPARE__MIN_EVENTS_FOR_REGRESSION": str(events),
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


HF_QUIET_ENVIRONMENT: Final = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}
"""Progress-bar switches of Hugging Face libraries, for the demo's process and its children."""

HF_PROGRESS_SWITCHES: Final = (
    ("huggingface_hub.utils", "disable_progress_bars"),
    ("transformers.utils.logging", "disable_progress_bar"),
    ("datasets", "disable_progress_bars"),
)
"""(module, function) that turns off an installed library's bars once it is imported."""


def quiet_hugging_face() -> None:
    """Turn off Hugging Face's own progress bars (downloads, checkpoint loading, dataset maps).

    Their tqdm bars interleave with the demo's progress lines and garble the output;
    the demo reports its own progress (rich). The environment switches reach child
    processes (the trainer's worker); the calls switch the bars off in this process even
    where a library was imported before the environment was set. Only the demo, its
    composition root, does this: other commands keep the libraries' defaults.
    """
    for name, value in HF_QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for module_name, function in HF_PROGRESS_SWITCHES:
        if importlib.util.find_spec(module_name.partition(".")[0]) is not None:
            getattr(importlib.import_module(module_name), function)()


def demo(
    data_dir: DataDir = None,
    approve_as: Annotated[
        str | None,
        typer.Option(
            "--approve-as",
            help="Name of the person who approves promotions into the baseline; without it "
            "proposals stay pending.",
        ),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Tiny model and small scenario (under 2 minutes).")
    ] = False,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Default: <data dir>/report.")
    ] = None,
) -> None:
    """Run the whole loop on the embedded stack with simulated users, then report."""
    _environment(fast)
    quiet_hugging_face()
    from rich.markup import escape

    from loraloop.cli.demo_run.driver import make_driver
    from loraloop.cli.demo_run.summary import cycle_renderables, overview_table
    from loraloop.cli.demo_run.text import closing_hint, console_line
    from loraloop.cli.services import console_service, qa_labeller
    from loraloop.simulation import SimulationSettings
    from loraloop.simulation.exceptions import DemoError
    from streams.broker import free_port
    from streams.stack import run_stack

    settings = load_settings(data_dir or DEMO_DATA_DIR)
    out = report_dir or settings.data_dir / REPORT_DIR
    port = free_port(settings.stream.web_host)
    console_url = f"http://{settings.stream.web_host}:{port}"
    console.stdout_console.print(console_line(console_url))
    if not approve_as:
        console.stdout_console.print(
            "[yellow]no --approve-as: promotions stay pending for a person to approve[/]"
        )
    result: dict[str, Any] = {}
    driver = make_driver(
        sim=SimulationSettings(), approver=approve_as, fast=fast, report_dir=out,
        console=console.stdout_console, result=result,
    )  # fmt: skip
    run_stack(
        settings,
        on_ready=driver,
        services=[console_service(settings, port)],
        console_url=console_url,
        qa_labeller=qa_labeller(),
    )
    if "summary" not in result:
        msg = f"the demo did not finish: {result.get('error', 'the stack stopped early')}"
        raise DemoError(msg)
    summary = result["summary"]
    console.stdout_console.print(overview_table(summary))
    cycles = summary["cycles"]
    for index, cycle in enumerate(cycles, start=1):
        for renderable in cycle_renderables(cycle, last=index == len(cycles)):
            console.stdout_console.print(renderable)
    if not approve_as:
        console.stdout_console.print("proposals are pending: nobody was named to approve them")
    check = summary.get("warehouse_check") or []
    console.stdout_console.print(
        "summary.json agrees with the warehouse" if not check else f"[red]mismatches:[/] {check}"
    )
    console.stdout_console.print(f"report: {escape(str(out / 'report.html'))}")
    console.stdout_console.print(escape(closing_hint(settings.data_dir)))
