"""Request plumbing: bounded body reading, parsing into models, SSE framing, metrics."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import BadRequestError, RequestTooLargeError
from loraloop.events import describe_error, first_field

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = f"the request body is over the gateway's {limit}-byte limit "
    hint = "(LORALOOP_GATEWAY__MAX_REQUEST_BYTES); shorten the conversation"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(too_large + hint)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLargeError(too_large + hint)
    return bytes(body)


def parse_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or a 400 saying what is wrong."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        msg = f"the request body is not JSON ({e}); send Content-Type: application/json"
        raise BadRequestError(msg) from e
    if not isinstance(value, dict):
        msg = f"the request body must be a JSON object, not {type(value).__name__}"
        raise BadRequestError(msg)
    return value


def parse(model: type[M], value: dict[str, Any]) -> M:
    """``value`` validated as ``model``; a 400 naming the first failing field otherwise."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise BadRequestError(describe_error(e), param=first_field(e)) from e


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class Metrics:
    """ASGI middleware: requests and latency per path and status, on its own registry."""

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "loraloop_gateway_requests",
            "Requests answered, by path and status.",
            ["path", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "loraloop_gateway_request_seconds",
            "Seconds to the response's first byte, by path.",
            ["path"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.latency.labels(path).observe(time.perf_counter() - start)
                self.requests.labels(path, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, timed)
