"""The ``loraloop`` command line (typer). Layers are imported lazily inside commands."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from loraloop.cli import admin, compare, config, demo, events, samples, stack, train, web, worker
from loraloop.cli import gateway as gateway_cli
from loraloop.cli.common import console, fail, plain_help
from loraloop.exceptions import LoraloopError

#: ``up``'s help names all seven parts (its docstring, in stack.py, names three).
UP_HELP = (
    "Run the whole loop on one machine until Ctrl-C (SIGINT/SIGTERM): the embedded Tansu "
    "broker, the stream worker (capture: detectors, sampling, warehouse writes), the owner "
    "of the embedded ClickHouse store, the review console (labelling, approvals, dashboards, "
    "/api/, /v1/route), the OpenAI-compatible chat gateway (/v1/chat/completions; "
    "LORALOOP_GATEWAY__IN_STACK=false leaves it out), the trainer service (LoRA cycles) and "
    "the rollout service (canary steps, rollback, completion). Writes <data-dir>/stack.json "
    "with the addresses; the console's first user is admin, its key in <data-dir>/admin.key."
)

app = typer.Typer(
    name="loraloop",
    help="Keep a production chatbot improving: capture problems, label, train, canary, promote.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up", help=UP_HELP)(stack.up)
app.command("replay")(stack.replay)
app.command("produce")(events.produce)
app.command("migrate")(admin.migrate)
app.command("status")(admin.status)
app.command("config")(config.config)
app.command("train")(train.train)
app.command("trainer")(train.trainer)
app.command("web")(web.web)
app.command("compare")(compare.compare)
app.command("worker")(worker.worker)
app.command("topics")(worker.topics)
app.command("demo")(demo.demo)
app.command("gateway")(gateway_cli.gateway)
app.add_typer(samples.samples_app, name="samples")
app.add_typer(admin.admin_app, name="admin")
plain_help(app)


@app.callback()
def _configure(
    log_level: Annotated[
        str | None, typer.Option(help="Logging level (default: LORALOOP_LOG_LEVEL or WARNING).")
    ] = None,
) -> None:
    from loraloop.settings import Settings

    level = (log_level or Settings().log_level).upper()
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console.stderr_console, show_path=False)],
    )


def main() -> None:
    """Entry point: run the CLI, turning loraloop errors into one clear line and exit code 1."""
    try:
        app()
    except LoraloopError as e:
        fail(str(e))


__all__ = ["app", "main"]
