"""The demo's chat gateway: simulated users ask it over HTTP with the ``openai`` client.

The demo serves loraloop's OpenAI-compatible gateway (:mod:`gateway`) on a free local
port, as production would run it in front of the chatbot's model: the router is the
demo's (its rollout steps), the backend the local one over the demo's base model and
its registry's adapters, and the gateway publishes each user turn and assistant reply
with the version it served. The simulated users know only the gateway's URL and key:
the version a user got comes back in the response (``model``, ``X-Loraloop-Version``).

The backend keeps greedy replies (``reply_cache_size``): the simulated users re-ask a
finite prompt set, so each (version, conversation) is generated once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from loraloop.simulation.exceptions import DemoError

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

    from gateway import TrafficLog
    from gateway.backends import LocalBackend
    from streams.stack import RunningStack
    from trainer.router import RouteDecision, Router

logger = logging.getLogger(__name__)

Messages = tuple[tuple[str, str], ...]
"""A conversation as hashable (role, content) pairs."""

STARTUP_TIMEOUT_S: Final = 30.0
STARTUP_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class Ask:
    """One chat request of a simulated user: the conversation so far, ending with theirs."""

    user_id: str
    conversation_id: str
    messages: Messages


TURNS_PER_EXCHANGE: Final = 2
"""Events the gateway publishes for each answered chat: the user's and the assistant's turn."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply and the version the gateway served it with."""

    text: str
    version: str


def _message(role: str, content: str) -> ChatCompletionMessageParam:
    """A user's or the assistant's message (the demo's conversations have no others)."""
    if role == "assistant":
        return {"role": "assistant", "content": content}
    return {"role": "user", "content": content}


class _DemoRoutes:
    """The demo's router as the gateway's version source; assignments are written on
    the warehouse's own thread (the rollout's looks flush them too)."""

    def __init__(self, router: Router, running: RunningStack) -> None:
        self._router = router
        self._running = running

    async def route(self, user_id: str) -> RouteDecision:
        return self._router.route(user_id)

    async def aclose(self) -> None:
        await self._running.warehouse.run(self._router.flush)


@dataclass
class DemoGateway:
    """The running gateway and a client of it."""

    url: str
    client: openai.AsyncOpenAI
    backend: LocalBackend
    traffic: TrafficLog
    alias: str
    concurrency: int
    on_progress: Callable[[int, int], None] | None = None
    progress_every_s: float = 10.0
    requests: int = 0

    async def ask(self, ask: Ask) -> Answer:
        """Send one chat completion; the version comes back with the reply."""
        from gateway.app import VERSION_HEADER

        raw = await self.client.chat.completions.with_raw_response.create(
            model=self.alias,
            messages=[_message(role, content) for role, content in ask.messages],
            user=ask.user_id,
            metadata={"conversation_id": ask.conversation_id},
        )
        completion = raw.parse()
        self.requests += 1
        return Answer(completion.choices[0].message.content or "", raw.headers[VERSION_HEADER])

    async def ask_all(self, asks: Sequence[Ask]) -> list[Answer]:
        """Every ask, ``concurrency`` in flight (the backend batches them), in order."""
        gate = asyncio.Semaphore(self.concurrency)
        done = 0
        last = time.perf_counter()

        async def one(ask: Ask) -> Answer:
            nonlocal done, last
            async with gate:
                answer = await self.ask(ask)
            done += 1
            if self.on_progress is not None and time.perf_counter() - last > self.progress_every_s:
                last = time.perf_counter()
                self.on_progress(done, len(asks))
            return answer

        return list(await asyncio.gather(*(one(a) for a in asks)))

    async def flushed(self) -> None:
        """Wait until every turn the gateway served is handed to the broker."""
        await self.traffic.flushed()

    def generated(self, version: str) -> int:
        """Distinct conversations ``version`` generated (the rest came from the cache)."""
        return self.backend.generated[version]


@contextlib.asynccontextmanager
async def serve_gateway(
    running: RunningStack,
    backend: LocalBackend,
    router: Router,
    *,
    concurrency: int,
    timeout_s: float,
) -> AsyncIterator[DemoGateway]:
    """Serve the gateway on a free port of this loop while inside; stops it on exit."""
    import openai
    import uvicorn
    from prometheus_client import CollectorRegistry

    from gateway import GatewayParts, GatewaySettings, TrafficLog, create_gateway, gateway_key
    from loraloop.cli.gateway import embedded_server
    from streams.broker import free_port
    from streams.producer import EventPublisher

    settings = running.settings
    gw = GatewaySettings().model_copy(
        update={
            "host": settings.stream.web_host,
            "port": free_port(settings.stream.web_host),
            "rate_limit_per_s": 0.0,  # the demo's few hundred users send bursts by design
        }
    )
    registry = CollectorRegistry()
    traffic = TrafficLog(
        lambda: EventPublisher(running.bootstrap, settings.stream, security=settings.kafka),
        queue_size=gw.publish_queue,
        batch=gw.publish_batch,
        registry=registry,
    )
    key = gateway_key(settings.data_dir, gw.api_key)
    parts = GatewayParts(
        settings=gw, registry=registry, backend=backend, routes=_DemoRoutes(router, running),
        traffic=traffic, api_key=key,
    )  # fmt: skip
    server = embedded_server(
        uvicorn.Config(
            create_gateway(parts),
            host=gw.host,
            port=gw.port,
            log_level="warning",
            timeout_keep_alive=gw.keep_alive_s,
        )
    )
    task = asyncio.create_task(server.serve(), name="demo-gateway")
    await _started(server, task)
    url = f"http://{gw.host}:{gw.port}/v1"
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=timeout_s)
    try:
        yield DemoGateway(
            url=url, client=client, backend=backend, traffic=traffic,
            alias=gw.model_aliases[0], concurrency=concurrency,
        )  # fmt: skip
    finally:
        await client.close()
        server.should_exit = True
        await task


async def _started(server: Any, task: asyncio.Task[None]) -> None:
    deadline = time.perf_counter() + STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            msg = "the demo's gateway stopped before it served: see the log above"
            raise DemoError(msg)
        if time.perf_counter() > deadline:
            msg = f"the demo's gateway did not start within {STARTUP_TIMEOUT_S:g}s"
            raise DemoError(msg)
        await asyncio.sleep(STARTUP_POLL_S)
