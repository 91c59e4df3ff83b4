"""What ``loraloop up`` runs next to the stream worker: the console and the trainer.

The composition root of the embedded stack. It lives in the CLI because only
the CLI may import every layer; the stream layer only knows "tasks to run once
the worker is up" and "a function that labels samples from QA verdicts".

The console's machine endpoints need the stack's service key: ``GET /v1/route``
(checked by its router) and the API description, ``/api/docs`` and ``/openapi.json``
(checked by :class:`KeyedPaths` in front of the console).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from loraloop.service_key import key_matches
from loraloop.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from streams.capture import QaLabeller
    from streams.stack import RunningStack
    from trainer.adapter_fleet import AdapterFleet
    from trainer.registry import Registry
    from trainer.rollout_service_config import RolloutServiceSettings

logger = logging.getLogger(__name__)

Service = Callable[["RunningStack"], Awaitable[None]]
UNAUTHORIZED: Final = 401


class KeyedPaths:
    """ASGI middleware: ``paths`` answer 401 unless the request carries the service key."""

    def __init__(self, app: ASGIApp, *, service_key: str, paths: frozenset[str]) -> None:
        self.app = app
        self.service_key = service_key
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            if not key_matches(Headers(scope=scope).get("authorization"), self.service_key):
                detail = (
                    f"{scope['path']} needs the service key: send 'Authorization: Bearer <key>' "
                    "(LORALOOP_STREAM__SERVICE_KEY, or the file service.key in the data directory)"
                )
                response = JSONResponse(
                    {"error": "NotAuthenticated", "detail": detail},
                    status_code=UNAUTHORIZED,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def api_description_paths(app: FastAPI) -> frozenset[str]:
    """The paths that describe ``app``'s API (Swagger UI, its OAuth redirect, the schema)."""
    urls = (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url)
    return frozenset(url for url in urls if url)


def qa_labeller() -> QaLabeller:
    """QA verdicts from ``llm.qa`` label samples the way a person in the console does."""
    from analytics.console.config import ConsoleSettings
    from analytics.pool import label_from_verdicts

    return partial(label_from_verdicts, taxonomy=ConsoleSettings().taxonomy)


def console_service(settings: Settings, port: int) -> Service:
    """The review console (pages, /api/, /v1/route) served by uvicorn in the worker's loop."""

    async def serve_console(running: RunningStack) -> None:
        import uvicorn

        from analytics.console.app import create_console
        from analytics.console.config import ConsoleSettings

        app = create_console(
            warehouse=running.warehouse,
            settings=ConsoleSettings(data_dir=settings.data_dir),
            extra_routers=_route_routers(running),
            lag_provider=partial(_lag_of, running),
            serving_problem=lambda: running.progress.serving_problem,
        )
        keyed = KeyedPaths(app, service_key=running.service_key, paths=api_description_paths(app))
        config = uvicorn.Config(
            keyed,
            host=settings.stream.web_host,
            port=port,
            log_level=settings.log_level.lower(),
            lifespan="off",
        )
        server = _EmbeddedServer(config)
        try:
            await server.serve()
        finally:
            server.should_exit = True

    return serve_console


def _lag_of(running: RunningStack) -> dict[str, int]:
    """Consumer lag per partition as the worker last measured it."""
    return {
        f"{topic}[{partition}]": lag for (topic, partition), lag in running.progress.lag.items()
    }


def _route_routers(running: RunningStack) -> list[Any]:
    """``GET /v1/route``: the version and adapter a serving layer should use for a user."""
    from trainer.rollout_service import router_for_stack
    from trainer.route_api import make_route_router

    router = router_for_stack(running.warehouse)
    return [make_route_router(router, service_key=running.service_key)]


def rollout_service(settings: Settings) -> Service:
    """Starts canaries for gated versions, looks at them, advances / rolls back / completes."""

    async def serve_rollout(running: RunningStack) -> None:
        from trainer.registry import Registry
        from trainer.rollout_service import router_for_stack, serve_rollouts
        from trainer.rollout_service_config import RolloutServiceSettings
        from trainer.service_config import TrainerSettings

        stop = asyncio.Event()
        router = await running.warehouse.run(router_for_stack, running.warehouse)
        registry = Registry(TrainerSettings().registry_root(settings.data_dir))
        config = RolloutServiceSettings()

        def report(problem: str | None) -> None:
            running.progress.serving_problem = problem

        try:
            await serve_rollouts(
                running.warehouse,
                config,
                router,
                stop,
                registry=registry,
                fleet=adapter_fleet(config, registry),
                on_serving_problem=report,
            )
        finally:
            stop.set()

    return serve_rollout


def adapter_fleet(config: RolloutServiceSettings, registry: Registry) -> AdapterFleet | None:
    """The adapter controller over ``config.adapter_replicas`` (None when there are none)."""
    from trainer.adapter_fleet import AdapterFleet, HttpReplica

    if not config.adapter_replicas:
        return None
    key = config.adapter_replica_api_key
    replicas = [
        HttpReplica(
            url,
            api_key=key.get_secret_value() if key else None,
            timeout_s=config.adapter_replica_timeout_s,
        )
        for url in config.adapter_replicas
    ]
    root = config.adapter_root
    return AdapterFleet(replicas, lambda v: root / v if root else registry.path(v))


def trainer_service(settings: Settings) -> Service:
    """The periodic / threshold / alert-triggered training service."""

    async def serve_trainer(running: RunningStack) -> None:
        from trainer.service import serve
        from trainer.service_config import TrainerSettings

        stop = asyncio.Event()
        try:
            await serve(running.warehouse, settings, TrainerSettings(), stop)
        finally:
            stop.set()

    return serve_trainer


try:
    import uvicorn as _uvicorn

    class _EmbeddedServer(_uvicorn.Server):
        """uvicorn without its own signal handlers: the Faust worker owns SIGINT/SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

except ImportError:  # pragma: no cover - uvicorn is a core dependency
    _EmbeddedServer = None  # type: ignore[assignment,misc]
