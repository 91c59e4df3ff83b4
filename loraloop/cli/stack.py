"""``loraloop up`` and ``loraloop replay``: the embedded stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from loraloop.cli.common import DataDir, console, fail, load_settings
from loraloop.settings import Settings


def console_port(requested: int, host: str) -> int:
    """The review console's port: ``requested``, or any free one for 0; a busy one is refused."""
    from streams.broker import free_port, port_free

    if requested == 0:
        return free_port(host)
    if not port_free(host, requested):
        fail(
            f"port {requested} on {host} is in use (another `loraloop up` or `loraloop web`?): "
            "pass --port N, or --port 0 for any free port (LORALOOP_CONSOLE__PORT)"
        )
    return requested


def up(
    data_dir: DataDir = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the review console (default: LORALOOP_CONSOLE__PORT, 8600; "
            "0 picks a free one).",
            min=0,
            max=65535,
        ),
    ] = None,
) -> None:
    """Run the embedded stack (broker, worker, warehouse owner) until SIGINT/SIGTERM."""
    from analytics.console.config import ConsoleSettings
    from gateway import GatewaySettings
    from loraloop.cli.gateway import gateway_service
    from loraloop.cli.services import (
        console_service,
        qa_labeller,
        rollout_service,
        trainer_service,
    )
    from streams.broker import port_free
    from streams.stack import RunningStack, run_stack

    settings = load_settings(data_dir)
    requested = ConsoleSettings(data_dir=settings.data_dir).port if port is None else port
    port = console_port(requested, settings.stream.web_host)
    console_url = f"http://{settings.stream.web_host}:{port}"
    gw = GatewaySettings()
    serves_gateway = gw.in_stack and port_free(gw.host, gw.port)  # else: it says why, later
    gateway_url = f"http://{gw.host}:{gw.port}/v1" if serves_gateway else ""

    async def announce(_running: RunningStack) -> None:
        info = settings.stack_file.read_text()
        console.stdout_console.print(f"[green]loraloop is up[/] ({settings.stack_file}):\n{info}")
        console.stdout_console.print(f"review console: {console_url}")
        console.stdout_console.print(
            f"service key (Authorization: Bearer, for /v1/route and /api/counts): "
            f"{key_source(settings)}",
            highlight=False,
        )

    run_stack(
        settings,
        on_ready=announce,
        services=[
            console_service(settings, port),
            trainer_service(settings),
            rollout_service(settings),
            gateway_service(settings),
        ],
        console_url=console_url,
        gateway_url=gateway_url,
        qa_labeller=qa_labeller(),
    )
    console.stdout_console.print("loraloop stopped cleanly")


def key_source(settings: Settings) -> str:
    """Where the service key comes from (never the key itself)."""
    from loraloop.service_key import service_key_file

    if settings.stream.service_key is not None and settings.stream.service_key.get_secret_value():
        return "LORALOOP_STREAM__SERVICE_KEY"
    return str(service_key_file(settings))


def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL event file.")],
    data_dir: DataDir = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Use this Kafka instead of starting the embedded broker.")
    ] = None,
) -> None:
    """Run FILE through the full pipeline on the embedded stack and print the counts."""
    from loraloop.cli.services import qa_labeller
    from streams.replay import replay_file

    settings = load_settings(data_dir)
    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    with console.stderr_console.status(f"replaying {file} through Kafka into ClickHouse..."):
        result = replay_file(file, settings, qa_labeller=qa_labeller())
    for line_error in result.line_errors:
        console.stderr_console.print(
            f"[yellow]skipped[/] {line_error}", highlight=False, soft_wrap=True
        )
    if result.error:
        fail(f"replay failed: {result.error}")
    summary = Table(title=f"replay of {file.name} ({result.seconds:.1f}s)")
    summary.add_column("what")
    summary.add_column("count", justify="right")
    for label, value in (
        ("lines read", result.lines),
        ("published", result.published),
        ("accepted", result.accepted),
        ("dead-lettered", result.dead_lettered),
    ):
        summary.add_row(label, str(value))
    for table, count in result.tables.items():
        summary.add_row(f"rows in {table}", str(count))
    console.stdout_console.print(summary)
