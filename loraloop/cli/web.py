"""``loraloop web``: the review console under uvicorn, on a ClickHouse server.

As in ``loraloop up``, the API description (``/api/docs``, ``/openapi.json``) needs the
service key; pages and ``/api/`` take console logins and API keys. Like ``up`` it also
serves ``GET /v1/route`` (what a gateway asks per user) and runs the rollout service
(with the adapter controller when ``LORALOOP_ROLLOUT_SERVICE__ADAPTER_REPLICAS`` names
serving replicas) on the same router, so a compose deployment routes, rolls out and
loads adapters from this one process. Run one: two would both step the rollouts.

The embedded chdb store belongs to the process that runs the worker (``loraloop
up``), so this command needs ``LORALOOP_CLICKHOUSE_DSN`` (``http://host:8123``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loraloop.cli.common import DataDir, console, fail, load_settings

if TYPE_CHECKING:
    from fastapi import APIRouter
    from starlette.types import ASGIApp

    from analytics.console.config import ConsoleSettings
    from analytics.console.context import ServingProblem
    from analytics.warehouse import Warehouse
    from trainer.registry import Registry
    from trainer.router import Router


def web_app(
    warehouse: Warehouse,
    settings: ConsoleSettings,
    service_key: str,
    *,
    routers: Sequence[APIRouter] = (),
    serving_problem: ServingProblem | None = None,
) -> ASGIApp:
    """The console as ``loraloop web`` serves it: its API description behind the key,
    ``routers`` (``/v1/route``) mounted next to it."""
    from analytics.console.app import create_console
    from loraloop.cli.services import KeyedPaths, api_description_paths

    app = create_console(
        warehouse=warehouse,
        settings=settings,
        extra_routers=routers,
        serving_problem=serving_problem,
    )
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
    from trainer.registry import Registry
    from trainer.rollout_service import router_for_stack
    from trainer.route_api import make_route_router
    from trainer.service_config import TrainerSettings

    settings = load_settings(data_dir)
    if settings.embedded_warehouse:
        fail(
            "loraloop web serves a ClickHouse server: set LORALOOP_CLICKHOUSE_DSN=http://host:8123 "
            "(the embedded store belongs to `loraloop up`)"
        )
    console_settings = ConsoleSettings(data_dir=settings.data_dir)
    warehouse = Warehouse.from_settings(settings)
    try:
        key = service_key(settings)
        router = router_for_stack(warehouse)
        serving = ServingState()
        app = web_app(
            warehouse,
            console_settings,
            key,
            routers=[make_route_router(router, service_key=key)],
            serving_problem=serving.problem,
        )
        bind_host = host or console_settings.host
        bind_port = port or console_settings.port
        console.stdout_console.print(
            f"review console and /v1/route on http://{bind_host}:{bind_port}"
        )
        config = uvicorn.Config(
            app, host=bind_host, port=bind_port, log_level=settings.log_level.lower()
        )
        registry = Registry(TrainerSettings().registry_root(settings.data_dir))
        asyncio.run(_serve(uvicorn.Server(config), warehouse, router, registry, serving))
    finally:
        warehouse.close()


class ServingState:
    """What the rollout service last reported as stopping its adapters being served."""

    def __init__(self) -> None:
        self._problem: str | None = None

    def report(self, problem: str | None) -> None:
        self._problem = problem

    def problem(self) -> str | None:
        return self._problem


async def _serve(
    server: Any, warehouse: Warehouse, router: Router, registry: Registry, serving: ServingState
) -> None:
    """uvicorn and the rollout service side by side until uvicorn stops (SIGINT/SIGTERM);
    the service's serving problems show in ``/api/health``."""
    from loraloop.cli.services import adapter_fleet
    from trainer.rollout_service import serve_rollouts
    from trainer.rollout_service_config import RolloutServiceSettings

    config = RolloutServiceSettings()
    stop = asyncio.Event()
    rollouts = asyncio.create_task(
        serve_rollouts(
            warehouse,
            config,
            router,
            stop,
            registry=registry,
            fleet=adapter_fleet(config, registry),
            on_serving_problem=serving.report,
        ),
        name="rollout-service",
    )
    try:
        await server.serve()
    finally:
        stop.set()
        await rollouts
