"""``loraloop gateway``: the OpenAI-compatible chat gateway in front of a running stack.

The composition root of the gateway: settings are read here, once, and each part is
built from its slice. The stack (``loraloop up``) provides the broker and the router
(``GET /v1/route`` on its console); the backend is the local model or upstream servers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from loraloop.cli.common import DataDir, console, load_settings
from loraloop.settings import Settings

if TYPE_CHECKING:
    from gateway import GatewayParts, GatewaySettings
    from gateway.backends import ChatBackend
    from streams.stack import RunningStack


def build_backend(settings: Settings, gw: GatewaySettings) -> ChatBackend:
    """The backend ``gw.backend`` names, built from its settings."""
    from gateway.backends import LocalBackend, UpstreamBackend

    if gw.backend == "openai":
        key = gw.upstream_api_key.get_secret_value() if gw.upstream_api_key else None
        return UpstreamBackend(
            urls=gw.upstreams,
            api_key=key,
            base_model=gw.upstream_base_model,
            connect_timeout_s=gw.connect_timeout_s,
            read_timeout_s=gw.read_timeout_s,
            max_connections=gw.max_connections,
        )
    from trainer.base_model import resolve_base_model
    from trainer.config import TrainConfig
    from trainer.service_config import TrainerSettings

    train = TrainConfig()
    cache = train.base_model_cache or settings.data_dir / "cache" / "base-model"
    ref = resolve_base_model(base_model=gw.base_model or train.base_model, cache_dir=cache)
    return LocalBackend.from_checkpoint(
        Path(ref.path),
        registry_root=TrainerSettings().registry_root(settings.data_dir),
        max_new_tokens=gw.max_new_tokens,
        adapter_cache_size=gw.adapter_cache_size,
        batch_size=gw.batch_size,
        batch_wait_s=gw.batch_wait_s,
        max_lora_rank=gw.max_lora_rank,
        reply_cache_size=gw.reply_cache_size,
    )


def build_parts(settings: Settings, gw: GatewaySettings) -> GatewayParts:
    """Everything the gateway needs, against the stack running in ``settings.data_dir``."""
    from prometheus_client import CollectorRegistry

    from gateway import GatewayParts, RemoteSource, TrafficLog, gateway_key
    from loraloop.service_key import service_key
    from streams.producer import EventPublisher
    from streams.stack import read_stack

    stack = None if settings.kafka_bootstrap and gw.route_url else read_stack(settings)
    bootstrap = settings.kafka_bootstrap or (stack.bootstrap if stack else "")
    route_url = gw.route_url or (stack.console_url if stack else "")
    registry = CollectorRegistry()

    def publisher() -> EventPublisher:
        return EventPublisher(bootstrap, settings.stream, security=settings.kafka)

    routes = RemoteSource(
        url=route_url,
        timeout_s=gw.connect_timeout_s,
        service_key=service_key(settings, create=False),
        cache_s=gw.route_cache_s,
        cache_users=gw.route_cache_users,
    )
    return GatewayParts(
        settings=gw,
        registry=registry,
        backend=build_backend(settings, gw),
        routes=routes,
        traffic=TrafficLog(
            publisher, queue_size=gw.publish_queue, batch=gw.publish_batch, registry=registry
        ),
        api_key=gateway_key(settings.data_dir, gw.api_key),
    )


def gateway(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: LORALOOP_GATEWAY__HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: LORALOOP_GATEWAY__PORT, 8400).")
    ] = None,
    backend: Annotated[
        Literal["local", "openai"] | None,
        typer.Option(help="local (in-process model) or openai (LORALOOP_GATEWAY__UPSTREAMS)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve OpenAI-compatible /v1/chat/completions in front of the running stack: each user
    is routed to a version (canary or stable), answered, and both turns are published."""
    import uvicorn

    from gateway import GatewaySettings, create_gateway
    from gateway.keys import gateway_key_file

    settings = load_settings(data_dir)
    overrides = {"host": host, "port": port, "backend": backend}
    gw = GatewaySettings().model_copy(update={k: v for k, v in overrides.items() if v})
    app = create_gateway(build_parts(settings, gw))
    console.stdout_console.print(
        f"gateway on http://{gw.host}:{gw.port}/v1 ({gw.backend} backend); API key in "
        f"{gateway_key_file(settings.data_dir)} unless LORALOOP_GATEWAY__API_KEY is set"
    )
    uvicorn.run(
        app, host=gw.host, port=gw.port, log_level=settings.log_level.lower(),
        timeout_keep_alive=gw.keep_alive_s,
    )  # fmt: skip


def gateway_service(settings: Settings) -> Callable[[RunningStack], Awaitable[None]]:
    """The gateway inside ``loraloop up`` (``LORALOOP_GATEWAY__IN_STACK=true``): the stack's
    own router (shared with the rollout service) and broker, the configured backend."""

    async def serve_gateway(running: RunningStack) -> None:
        import asyncio

        import uvicorn
        from prometheus_client import CollectorRegistry

        from gateway import (
            GatewayParts,
            GatewaySettings,
            RouterSource,
            TrafficLog,
            create_gateway,
            gateway_key,
        )
        from streams.producer import EventPublisher
        from trainer.rollout_service import router_for_stack

        gw = GatewaySettings()
        if not gw.in_stack:
            return
        from streams.broker import port_free

        if not port_free(gw.host, gw.port):  # uvicorn would sys.exit() the whole stack
            console.stderr_console.print(
                f"[yellow]chat gateway not started[/]: port {gw.port} on {gw.host} is in use "
                "(another `loraloop gateway`?); set LORALOOP_GATEWAY__PORT, or "
                "LORALOOP_GATEWAY__IN_STACK=false to run it beside the stack",
                highlight=False,
            )
            return
        router = await running.warehouse.run(router_for_stack, running.warehouse)
        registry = CollectorRegistry()
        parts = GatewayParts(
            settings=gw,
            registry=registry,
            backend=await asyncio.to_thread(build_backend, settings, gw),
            routes=RouterSource(router, blocking=True),
            traffic=TrafficLog(
                lambda: EventPublisher(running.bootstrap, settings.stream, security=settings.kafka),
                queue_size=gw.publish_queue,
                batch=gw.publish_batch,
                registry=registry,
            ),
            api_key=gateway_key(settings.data_dir, gw.api_key),
        )
        config = uvicorn.Config(
            create_gateway(parts), host=gw.host, port=gw.port,
            log_level=settings.log_level.lower(), timeout_keep_alive=gw.keep_alive_s,
        )  # fmt: skip
        server = embedded_server(config)
        console.stdout_console.print(f"chat gateway: http://{gw.host}:{gw.port}/v1")
        try:
            await server.serve()
        finally:
            server.should_exit = True

    return serve_gateway


def embedded_server(config: Any) -> Any:
    """uvicorn without its own signal handlers: the Faust worker owns SIGINT/SIGTERM."""
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return EmbeddedServer(config)
