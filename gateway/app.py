"""The gateway's FastAPI app: OpenAI chat completions routed, served and logged.

``create_gateway`` takes its parts ready made (the composition root, ``loraloop
gateway``, builds them from settings): the backend, the version source, the traffic
log and the API key.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.backends.base import AdapterHost, ChatBackend
from gateway.config import GatewaySettings
from gateway.errors import (
    AuthenticationError,
    BadRequestError,
    GatewayError,
    NotFoundError,
)
from gateway.http import SSE_DONE, Metrics, parse, parse_object, read_body, sse
from gateway.limits import RateLimiter
from gateway.routing import VersionSource
from gateway.schemas import (
    ChatRequest,
    LoadAdapter,
    UnloadAdapter,
    Usage,
    chunk_body,
    completion_body,
    completion_id,
    usage_chunk_body,
)
from gateway.traffic import TrafficLog, TurnIndex, exchange, new_event_id
from loraloop.events import KINDS, MAX_ID_CHARS, MAX_TEXT_CHARS, Turn
from loraloop.service_key import key_matches
from trainer.router import RouteDecision

logger = logging.getLogger(__name__)

USER_HEADER: Final = "X-Loraloop-User"
CONVERSATION_HEADER: Final = "X-Loraloop-Conversation"
VERSION_HEADER: Final = "X-Loraloop-Version"
CANARY_HEADER: Final = "X-Loraloop-Canary"
TURN_HEADER: Final = "X-Loraloop-Turn-Index"
"""The assistant turn's index: what feedback on this reply names as ``turn_index``."""
ACCEPTED: Final = 202
CHAT_ROLES: Final = frozenset({"user", "assistant"})
"""Message roles that are turns of the conversation (system and tool messages are not)."""
STOP: Final = "stop"
JSON: Final = "application/json"
INTERNAL_ERROR: Final = 500
EVENT_PATHS: Final = {"feedback": "feedback", "handoffs": "handoff", "outcomes": "outcome"}


@dataclass(frozen=True)
class GatewayParts:
    """What the gateway is made of; the composition root builds each from settings."""

    settings: GatewaySettings
    registry: CollectorRegistry
    """Where the gateway's metrics (and its traffic log's) are registered."""
    backend: ChatBackend
    routes: VersionSource
    traffic: TrafficLog
    api_key: str


@dataclass(frozen=True)
class Served:
    """Who a chat request is for and where it goes."""

    user_id: str
    conversation_id: str
    decision: RouteDecision
    prior_turns: int

    def headers(self, index: int) -> dict[str, str]:
        return {
            VERSION_HEADER: self.decision.version,
            CONVERSATION_HEADER: self.conversation_id,
            CANARY_HEADER: str(self.decision.is_canary).lower(),
            TURN_HEADER: str(index + 1),
        }


def _error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def _http_error(status: int, detail: str) -> JSONResponse:
    body = {"error": {"message": detail, "type": "invalid_request_error", "param": None,
                      "code": None}}  # fmt: skip
    return JSONResponse(body, status_code=status)


def _identity(text: str | None, what: str, param: str | None) -> str | None:
    value = (text or "").strip() or None
    if value is not None and len(value) > MAX_ID_CHARS:
        msg = f"{what} is {len(value)} characters; at most {MAX_ID_CHARS} are accepted"
        raise BadRequestError(msg, param=param)
    return value


class Gateway:
    """The request handlers, over :class:`GatewayParts`."""

    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.limiter = RateLimiter(
            per_s=parts.settings.rate_limit_per_s,
            burst=parts.settings.rate_limit_burst,
            keys=parts.settings.rate_limit_users,
        )
        self.turns = TurnIndex(parts.settings.conversations_kept)
        self.registry = parts.registry
        self.created = int(time.time())

    async def authenticate(
        self, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
    ) -> None:
        if not key_matches(authorization, self.parts.api_key):
            msg = (
                "send the gateway's API key as 'Authorization: Bearer <key>' (the openai "
                "client's api_key): LORALOOP_GATEWAY__API_KEY or <data-dir>/gateway.key"
            )
            raise AuthenticationError(msg)

    async def models(self) -> dict[str, Any]:
        """The aliases clients ask for and, as vLLM lists them, the adapters loaded now."""
        data = [self._model(a) for a in self.settings.model_aliases]
        host = self._adapter_host()
        if host is not None:
            parent = self.settings.model_aliases[0]
            data += [{**self._model(name), "parent": parent} for name in host.loaded]
        return {"object": "list", "data": data}

    async def model(self, model_id: str) -> dict[str, Any]:
        if model_id not in self.settings.model_aliases:
            raise self._unknown_model(model_id)
        return self._model(model_id)

    def _model(self, name: str) -> dict[str, Any]:
        body = {"id": name, "object": "model", "created": self.created, "owned_by": "loraloop"}
        host = self._adapter_host()
        if host is not None and host.max_lora_rank is not None:
            body["max_lora_rank"] = host.max_lora_rank
        return body

    def _adapter_host(self) -> AdapterHost | None:
        backend = self.parts.backend
        return backend if isinstance(backend, AdapterHost) else None

    async def load_adapter(self, request: Request) -> Response:
        """``POST /v1/load_lora_adapter``: load an adapter from a path, as vLLM does."""
        host = self._require_host()
        body = parse(
            LoadAdapter, parse_object(await read_body(request, self.settings.max_request_bytes))
        )
        await host.load_adapter(body.lora_name, Path(body.lora_path))
        return Response(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    async def unload_adapter(self, request: Request) -> Response:
        """``POST /v1/unload_lora_adapter``."""
        host = self._require_host()
        body = parse(
            UnloadAdapter, parse_object(await read_body(request, self.settings.max_request_bytes))
        )
        await host.unload_adapter(body.lora_name)
        return Response(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

    def _require_host(self) -> AdapterHost:
        host = self._adapter_host()
        if host is None:
            msg = (
                "this gateway's backend does not load adapters at runtime: load them into the "
                "upstream (vLLM's /v1/load_lora_adapter) instead"
            )
            raise NotFoundError(msg, code="not_supported")
        return host

    def _unknown_model(self, name: str) -> NotFoundError:
        names = ", ".join(repr(a) for a in self.settings.model_aliases)
        msg = f"the model {name!r} does not exist: ask for {names}; loraloop picks the version"
        return NotFoundError(msg, param="model", code="model_not_found")

    async def chat(self, request: Request) -> Response:
        body = await read_body(request, self.settings.max_request_bytes)
        chat = parse(ChatRequest, parse_object(body))
        served = await self._serve(chat, request)
        if not chat.stream:
            reply = await self.parts.backend.complete(chat, served.decision.adapter_name)
            index = await self._log(chat, served, reply.text)
            ident = completion_id()
            content = completion_body(reply, ident=ident, version=served.decision.version)
            return Response(orjson.dumps(content), media_type=JSON, headers=served.headers(index))
        return await self._stream(chat, served)

    async def _serve(self, chat: ChatRequest, request: Request) -> Served:
        if chat.model not in self.settings.model_aliases:
            raise self._unknown_model(chat.model)
        user = _identity(chat.user or chat.safety_identifier, "user", "user") or _identity(
            request.headers.get(USER_HEADER), USER_HEADER, "user"
        )
        if user is None:
            msg = f"name the end user: the request's user or safety_identifier, or {USER_HEADER}"
            raise BadRequestError(msg, param="user")
        conversation = _identity(
            (chat.metadata or {}).get("conversation_id"), "conversation_id", "metadata"
        ) or _identity(request.headers.get(CONVERSATION_HEADER), CONVERSATION_HEADER, None)
        last = chat.messages[-1]
        if last.role != "user":
            msg = f"the last message must be the user's, not {last.role!r}: it is what is answered"
            raise BadRequestError(msg, param="messages")
        if len(last.text) > MAX_TEXT_CHARS:
            msg = f"the user's message is over {MAX_TEXT_CHARS} characters; shorten it"
            raise BadRequestError(msg, param="messages")
        self.limiter.take(user)
        decision = await self.parts.routes.route(user)
        prior = sum(1 for m in chat.messages[:-1] if m.role in CHAT_ROLES)
        return Served(user, conversation or f"conv-{uuid.uuid4().hex}", decision, prior)

    async def _log(self, chat: ChatRequest, served: Served, answer: str) -> int:
        index = self.turns.claim(served.conversation_id, served.prior_turns)
        await self._log_at(chat, served, index, answer)
        return index

    async def _stream(self, chat: ChatRequest, served: Served) -> Response:
        pieces = self.parts.backend.stream(chat, served.decision.adapter_name)
        first = await anext(pieces, None)  # the request fails as a whole before the first byte
        index = self.turns.claim(served.conversation_id, served.prior_turns)
        ident, created, version = completion_id(), int(time.time()), served.decision.version

        def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
            return sse(chunk_body(ident=ident, created=created, version=version, delta=delta,
                                  finish=finish))  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            parts: list[str] = []
            usage: Usage | None = None
            logged = False
            try:
                yield chunk({"role": "assistant", "content": ""})
                try:
                    async for piece in _prepend(first, pieces):
                        if isinstance(piece, Usage):
                            usage = piece
                            continue
                        parts.append(piece)
                        yield chunk({"content": piece})
                    yield chunk({}, STOP)
                    if usage is not None and chat.wants_usage:
                        yield sse(usage_chunk_body(ident=ident, created=created, version=version,
                                                   usage=usage))  # fmt: skip
                except GatewayError as e:
                    logger.warning("stream in %s failed: %s", served.conversation_id, e)
                    yield sse(e.body())
                await self.parts.traffic.submit(self._turns(chat, served, index, "".join(parts)))
                logged = True
                yield SSE_DONE
            finally:  # the client left midway: what it was sent is still the exchange
                if not logged:
                    turns = self._turns(chat, served, index, "".join(parts))
                    self.parts.traffic.submit_nowait(turns)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers=served.headers(index)
        )

    async def _log_at(self, chat: ChatRequest, served: Served, index: int, answer: str) -> None:
        await self.parts.traffic.submit(self._turns(chat, served, index, answer))

    def _turns(self, chat: ChatRequest, served: Served, index: int, answer: str) -> list[Turn]:
        if len(answer) > MAX_TEXT_CHARS:
            logger.warning(
                "reply in %s cut to %d characters for capture",
                served.conversation_id,
                MAX_TEXT_CHARS,
            )
        return exchange(
            conversation_id=served.conversation_id,
            user_id=served.user_id,
            index=index,
            question=chat.messages[-1].text,
            answer=answer[:MAX_TEXT_CHARS],
            version=served.decision.version,
        )

    async def event(self, request: Request, kind: str) -> JSONResponse:
        body = parse_object(await read_body(request, self.settings.max_request_bytes))
        body.setdefault("event_id", new_event_id())
        body.setdefault("ts", datetime.now(UTC).isoformat())
        event = parse(KINDS[kind].model, body)
        await self.parts.traffic.publish_now(event)
        return JSONResponse(
            {"event_id": event.event_id, "topic": KINDS[kind].topic}, status_code=ACCEPTED
        )

    async def metrics(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


async def _on_gateway_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, GatewayError)  # noqa: S101 (registered for GatewayError only)
    return _error_response(error)


async def _on_http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101 (registered for it only)
    return _http_error(error.status_code, str(error.detail))


async def _on_unexpected(_: Request, error: Exception) -> Response:
    logger.error("gateway request failed", exc_info=error)
    body = {
        "error": {
            "message": f"the gateway failed: {type(error).__name__}: {error}; see its log",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return JSONResponse(body, status_code=INTERNAL_ERROR)


async def _prepend(
    first: str | Usage | None, rest: AsyncIterator[str | Usage]
) -> AsyncIterator[str | Usage]:
    if first is not None:
        yield first
    async for piece in rest:
        yield piece


async def _health() -> dict[str, str]:
    return {"status": "ok"}


def _acceptor(gateway: Gateway, kind: str) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def accept(request: Request) -> JSONResponse:
        return await gateway.event(request, kind)

    return accept


def create_gateway(parts: GatewayParts) -> FastAPI:
    """The gateway app over ``parts``; its lifespan starts and stops the traffic log."""
    gateway = Gateway(parts)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await parts.traffic.start()
        try:
            yield
        finally:
            await parts.traffic.close()
            await parts.backend.aclose()
            await parts.routes.aclose()

    app = FastAPI(title="loraloop gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.parts = parts
    app.add_middleware(Metrics, registry=parts.registry)
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    keyed = [Depends(gateway.authenticate)]
    app.add_api_route("/v1/models", gateway.models, methods=["GET"], dependencies=keyed)
    app.add_api_route("/v1/models/{model_id}", gateway.model, methods=["GET"], dependencies=keyed)
    app.add_api_route("/v1/chat/completions", gateway.chat, methods=["POST"], dependencies=keyed)
    for path, handler in (
        ("/v1/load_lora_adapter", gateway.load_adapter),
        ("/v1/unload_lora_adapter", gateway.unload_adapter),
    ):
        app.add_api_route(path, handler, methods=["POST"], dependencies=keyed)
    for path, kind in EVENT_PATHS.items():
        accept = _acceptor(gateway, kind)
        app.add_api_route(f"/v1/{path}", accept, methods=["POST"], dependencies=keyed)
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_api_route("/metrics", gateway.metrics, methods=["GET"])
    return app
