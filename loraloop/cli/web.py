"""``loraloop web``: the review console under uvicorn, on a ClickHouse server.

As in ``loraloop up``, the API description (``/api/docs``, ``/openapi.json``) needs the
service key; pages and ``/api/`` take console logins and API keys.

The embedded chdb store belongs to the process that runs the worker (``loraloop
up``), so this command needs ``LORALOOP_CLICKHOUSE_DSN`` (``http://host:8123``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from loraloop.cli.common import DataDir, console, fail, load_settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from analytics.console.config import ConsoleSettings
    from analytics.warehouse import Warehouse


def web_app(warehouse: Warehouse, settings: ConsoleSettings, service_key: str) -> ASGIApp:
    """The console as ``loraloop web`` serves it: its API description behind the key."""
    from analytics.console.app import create_console
    from loraloop.cli.services import KeyedPaths, api_description_paths

    app = create_console(warehouse=warehouse, settings=settings)
    return KeyedPaths(app, service_key=service_key, paths=api_description_paths(app))


def web(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: console setting).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: console setting).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the review console (pages and /api/) against the configured ClickHouse."""
    import uvicorn

    from analytics.console.config import ConsoleSettings
    from analytics.warehouse import Warehouse
    from loraloop.service_key import service_key

    settings = load_settings(data_dir)
    if settings.embedded_warehouse:
        fail(
            "loraloop web serves a ClickHouse server: set LORALOOP_CLICKHOUSE_DSN=http://host:8123 "
            "(the embedded store belongs to `loraloop up`)"
        )
    console_settings = ConsoleSettings(data_dir=settings.data_dir)
    warehouse = Warehouse.from_settings(settings)
    try:
        app = web_app(warehouse, console_settings, service_key(settings))
        bind_host = host or console_settings.host
        bind_port = port or console_settings.port
        console.stdout_console.print(f"review console on http://{bind_host}:{bind_port}")
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=settings.log_level.lower())
    finally:
        warehouse.close()
