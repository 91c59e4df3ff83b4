"""``loraloop produce``: validate a JSONL file and publish its events to Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from loraloop.cli.common import DataDir, console, fail, load_settings
from loraloop.eventfile import LineError, read_events, strip_type


def produce(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL event file.")],
    data_dir: DataDir = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka host:port (default: LORALOOP_KAFKA_BOOTSTRAP or the stack's)."),
    ] = None,
) -> None:
    """Validate every line of FILE and publish the valid events, keyed by conversation."""
    from streams.producer import EventPublisher, Outgoing
    from streams.stack import read_stack
    from streams.topics import ensure_topics

    settings = load_settings(data_dir)
    target = bootstrap or settings.kafka_bootstrap or read_stack(settings).bootstrap
    bad = 0

    def good_events() -> Iterator[Outgoing]:
        """Valid lines as messages, read lazily so a huge file never sits in memory."""
        nonlocal bad
        for item in read_events(file):
            if isinstance(item, LineError):
                bad += 1
                console.stderr_console.print(
                    f"[yellow]skipped[/] {item}", highlight=False, soft_wrap=True
                )
                continue
            yield Outgoing(item.kind.topic, item.key, strip_type(item.raw))

    async def send() -> int:
        await ensure_topics(target, settings.stream)
        async with EventPublisher(target, settings.stream) as publisher:
            return (await publisher.publish(good_events())).sent

    sent = asyncio.run(send())
    console.stdout_console.print(f"published {sent} events to {target}; {bad} bad lines skipped")
    if bad:
        raise typer.Exit(code=1)
    if not sent:
        fail(f"{file} holds no events")
