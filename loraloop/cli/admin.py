"""``loraloop migrate``, ``status`` and ``admin recover`` (``config`` is in ``config.py``)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Annotated

import typer
from rich.table import Table

from loraloop.cli.common import DataDir, console, load_settings, open_warehouse
from loraloop.exceptions import StackNotRunningError
from loraloop.settings import Settings

_HTTP_TIMEOUT_S = 10

admin_app = typer.Typer(
    help="Operator tools for the review console, run on the machine that holds the data.",
    no_args_is_help=True,
)


def migrate(
    data_dir: DataDir = None,
    print_ddl: Annotated[
        bool,
        typer.Option("--print-ddl", help="Print the DDL that would run (cluster mode included)."),
    ] = False,
) -> None:
    """Apply pending warehouse migrations (re-runnable)."""
    from analytics.warehouse import migration_ddl

    settings = load_settings(data_dir)
    if print_ddl:
        console.stdout_console.print(migration_ddl(settings), highlight=False, markup=False)
        return
    warehouse = open_warehouse(settings, migrate=False)
    try:
        applied = warehouse.migrate(text_ttl_days=settings.warehouse.text_ttl_days)
    finally:
        warehouse.close()
    if applied:
        console.stdout_console.print("applied: " + ", ".join(applied))
    else:
        console.stdout_console.print("the warehouse schema is up to date")


def _counts_from_stack(web_url: str, settings: Settings) -> dict[str, int]:
    from loraloop.service_key import bearer_header, service_key

    headers = bearer_header(service_key(settings, create=False))
    request = urllib.request.Request(f"{web_url}/api/counts", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as resp:  # noqa: S310
        return dict(json.loads(resp.read())["tables"])


def _counts_direct(settings: Settings) -> dict[str, int]:
    warehouse = open_warehouse(settings, migrate=False)
    try:
        return warehouse.table_counts()
    finally:
        warehouse.close()


async def _offsets(bootstrap: str, settings: Settings) -> list[tuple[str, int, int, int | None]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # committed() asks the group coordinator without joining the group.
    from streams.security import client_kwargs
    from streams.topics import all_topics, topic_name

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.stream.app_id,
        enable_auto_commit=False,
        **client_kwargs(settings.kafka),
    )
    await consumer.start()
    try:
        tps = []
        for base in all_topics():
            parts = consumer.partitions_for_topic(topic_name(settings.stream, base)) or set()
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(topic_name(settings.stream, base)) or set()
            tps += [TopicPartition(topic_name(settings.stream, base), p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps) if tps else {}
        rows = []
        for tp in tps:
            done = await consumer.committed(tp)
            rows.append((tp.topic, tp.partition, int(ends[tp]), done))
        return rows
    finally:
        await consumer.stop()


def status(data_dir: DataDir = None) -> None:
    """What runs, topic offsets and consumer lag, and table row counts."""
    from streams.stack import read_stack

    settings = load_settings(data_dir)
    out = console.stdout_console
    bootstrap = settings.kafka_bootstrap
    counts: dict[str, int] | None = None
    try:
        info = read_stack(settings)
        out.print(f"stack: running (pid {info.pid}), broker {info.bootstrap}, web {info.web_url}")
        if info.console_url:
            out.print(f"review console: {info.console_url} (first user admin, key in admin.key)")
        if info.gateway_url:
            out.print(f"chat gateway: {info.gateway_url} (OpenAI base URL, key in gateway.key)")
        bootstrap = bootstrap or info.bootstrap
        counts = _counts_from_stack(info.web_url, settings)
    except StackNotRunningError:
        out.print(f"stack: not running in {settings.data_dir}")
    if bootstrap:
        # Titles are lines of their own: a table title wraps at the table's width, mid-word.
        title = f"topics on {bootstrap} (group {settings.stream.app_id})"
        out.print(title, highlight=False, soft_wrap=True)
        table = Table()
        for column in ("topic", "partition", "end offset", "committed", "lag"):
            table.add_column(column)
        for topic, partition, end, done in asyncio.run(_offsets(bootstrap, settings)):
            lag = "-" if done is None else str(max(0, end - done))
            table.add_row(topic, str(partition), str(end), "-" if done is None else str(done), lag)
        out.print(table)
    store_exists = (settings.data_dir / "warehouse").exists()
    if counts is None and (store_exists or not settings.embedded_warehouse):
        counts = _counts_direct(settings)
    if counts is None:
        out.print("warehouse: not created yet (run `loraloop migrate` or `loraloop up`)")
        return
    out.print(f"warehouse {settings.effective_clickhouse_dsn}", highlight=False, soft_wrap=True)
    rows = Table()
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in counts.items():
        rows.add_row(name, str(count))
    out.print(rows)


@admin_app.command("recover")
def recover(
    data_dir: DataDir = None,
    user: Annotated[
        str | None,
        typer.Option(help="The admin to restore (default: the bootstrap admin's name)."),
    ] = None,
) -> None:
    """Re-enable an admin (admin role restored, new key) when every admin is locked out.

    For the bootstrap admin the new key goes to <data_dir>/admin.key (mode 0600) unless
    LORALOOP_CONSOLE__ADMIN_KEY is set (then that key is kept); for another user it is
    printed once. Needs the warehouse: with the embedded store, stop `loraloop up` first.
    """
    from analytics.console.config import ConsoleSettings
    from analytics.console.users import UserStore, new_key, write_key_file

    settings = load_settings(data_dir)
    console_settings = ConsoleSettings(data_dir=settings.data_dir)
    name = user or console_settings.admin_user
    bootstrap = name == console_settings.admin_user
    configured = console_settings.admin_key.get_secret_value() if console_settings.admin_key else ""
    key = configured if bootstrap and configured else new_key(console_settings)
    warehouse = open_warehouse(settings)
    try:
        restored = UserStore(warehouse, console_settings).recover_admin(name, key)
    finally:
        warehouse.close()
    out = console.stdout_console
    if bootstrap and configured:
        out.print(f"admin {restored.username!r} restored with LORALOOP_CONSOLE__ADMIN_KEY")
    elif bootstrap:
        write_key_file(console_settings.admin_key_file, key)
        out.print(
            f"admin {restored.username!r} restored; its new key is in "
            f"{console_settings.admin_key_file} (mode 0600)"
        )
    else:
        out.print(f"admin {restored.username!r} restored; its new API key (shown once): {key}")
