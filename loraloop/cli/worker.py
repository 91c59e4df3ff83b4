"""``loraloop worker`` and ``loraloop topics``: server mode, on an external Kafka and a
ClickHouse server (the production topology of ``docker-compose.yml``).

``loraloop up`` runs everything in one process on the embedded broker and engine;
``worker`` runs only the stream worker, as many replicas as there are partitions to
share (one consumer group, ``LORALOOP_STREAM__APP_ID``), next to ``loraloop web`` and
``loraloop trainer`` in processes of their own.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from loraloop.cli.common import DataDir, console, load_settings
from loraloop.exceptions import ConfigError
from loraloop.settings import Settings


def check_server_mode(settings: Settings) -> None:
    """Refuse settings that only work in the embedded, single-process stack."""
    if not settings.kafka_bootstrap:
        msg = (
            "loraloop worker needs an external Kafka: set LORALOOP_KAFKA_BOOTSTRAP=host:port "
            "(for the embedded broker, run `loraloop up`)"
        )
        raise ConfigError(msg)
    if settings.embedded_warehouse:
        msg = (
            "loraloop worker needs a ClickHouse server: set LORALOOP_CLICKHOUSE_DSN="
            "http://host:8123 (the embedded chdb engine serves one process only, so it cannot "
            "be shared by several workers, the console and the trainer; use `loraloop up`)"
        )
        raise ConfigError(msg)


def worker(data_dir: DataDir = None) -> None:
    """Run the stream worker alone against LORALOOP_KAFKA_BOOTSTRAP and a ClickHouse server,
    until SIGINT/SIGTERM; start one per machine or container to scale out."""
    from loraloop.cli.services import qa_labeller
    from loraloop.cli.stack import key_source
    from streams.stack import RunningStack, run_stack

    settings = load_settings(data_dir)
    check_server_mode(settings)

    async def announce(running: RunningStack) -> None:
        console.stdout_console.print(
            f"[green]loraloop worker is up[/]: group {settings.stream.app_id} on "
            f"{running.bootstrap}, warehouse {settings.effective_clickhouse_dsn}; service key "
            f"(for /api/counts) from {key_source(settings)}",
            highlight=False,
        )

    run_stack(settings, on_ready=announce, qa_labeller=qa_labeller())
    console.stdout_console.print("loraloop worker stopped cleanly")


def topics(
    data_dir: DataDir = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port (default: LORALOOP_KAFKA_BOOTSTRAP).")
    ] = None,
) -> None:
    """Create loraloop's topics with the configured partitions, replication, retention and
    compaction (idempotent: existing topics are left as they are)."""
    from streams.topics import all_topics, new_topics, topic_name
    from streams.topics import ensure_topics as create

    settings = load_settings(data_dir)
    target = bootstrap or settings.kafka_bootstrap
    if not target:
        msg = "loraloop topics needs a broker: pass --bootstrap or set LORALOOP_KAFKA_BOOTSTRAP"
        raise ConfigError(msg)
    created = asyncio.run(create(target, settings.stream, security=settings.kafka))
    out = console.stdout_console
    for topic in new_topics(settings.stream):
        if topic.name not in created:
            out.print(f"exists   {topic.name} (left as it is)", highlight=False)
            continue
        configs = " ".join(f"{k}={v}" for k, v in sorted(topic.topic_configs.items()))
        out.print(
            f"created  {topic.name} partitions={topic.num_partitions} "
            f"replication={topic.replication_factor} {configs}",
            highlight=False,
        )
    names = [topic_name(settings.stream, base) for base in all_topics()]
    out.print(f"{len(created)} created, {len(names) - len(created)} already there on {target}")
