"""Test doubles for the gateway: an OpenAI-compatible upstream and a recording publisher."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CollectorRegistry

from gateway import GatewayParts, GatewaySettings, RouterSource, TrafficLog
from gateway.backends import UpstreamBackend
from streams.broker import free_port
from streams.producer import Outgoing, PublishReport
from trainer.rollout_config import RolloutSettings
from trainer.router import Router, RoutingTable

API_KEY = "test-gateway-key"
DRIP_S = 0.5
"""Seconds between the words ``model_drip`` streams."""
SLOW_S = 3.0
"""How long ``model_slow`` takes to answer: longer than the tests' read timeouts."""


def fake_upstream(seen: list[dict[str, Any]] | None = None) -> FastAPI:
    """Answers 'echo <last message> from <model>', whole or as a stream of words."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if seen is not None:
            seen.append(body)
        text = f"echo {body['messages'][-1]['content']} from {body['model']}"
        if body.get("model") == "model_missing":
            return JSONResponse({"error": {"message": "adapter not loaded"}}, status_code=404)
        if body.get("model") == "model_slow":
            await asyncio.sleep(SLOW_S)
        if not body.get("stream"):
            return {
                "id": "up-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            }  # fmt: skip

        async def words() -> AsyncIterator[str]:
            for word in text.split(" "):
                if body.get("model") == "model_drip":
                    await asyncio.sleep(DRIP_S)
                chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(words(), media_type="text/event-stream")

    return app


class FakePublisher:
    """Records what would go to Kafka; ``fail`` makes publishing raise."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.fail = False

    async def __aenter__(self) -> FakePublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def publish(self, messages: Iterable[Outgoing]) -> PublishReport:
        from streams.exceptions import PublishError

        if self.fail:
            msg = "broker down"
            raise PublishError(msg)
        batch = list(messages)
        self.sent += batch
        return PublishReport(sent=len(batch))

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in self.sent if m.topic == topic]


def table_router(share: float = 50.0, allowlist: list[str] | None = None) -> Router:
    table = RoutingTable(stable="model_v1", canary="model_v2", share_percent=share)
    return Router(table, settings=RolloutSettings(allowlist=allowlist or []))


def dead_url() -> str:
    """An upstream address nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/v1"


def upstream_parts(
    publisher: Any,
    *,
    urls: list[str],
    router: Router | None = None,
    **settings: Any,
) -> GatewayParts:
    gw = GatewaySettings(backend="openai", upstreams=urls, **settings)
    registry = CollectorRegistry()
    backend = UpstreamBackend(
        urls=gw.upstreams,
        api_key=None,
        base_model="base",
        connect_timeout_s=gw.connect_timeout_s,
        read_timeout_s=gw.read_timeout_s,
        max_connections=gw.max_connections,
    )
    return GatewayParts(
        settings=gw,
        registry=registry,
        backend=backend,
        routes=RouterSource(router or table_router()),
        traffic=TrafficLog(lambda: publisher, queue_size=100, batch=10, registry=registry),
        api_key=API_KEY,
    )


class Server:
    """An ASGI app under uvicorn in a thread, on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
