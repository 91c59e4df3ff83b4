"""The console's FastAPI app factory."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics.console import api, dashboards, pages
from analytics.console.auth import key_principal
from analytics.console.config import ConsoleSettings
from analytics.console.context import ConsoleContext, LagProvider, ServingProblem
from analytics.console.exceptions import (
    BodyTooLarge,
    InvalidRequest,
    NotAuthenticated,
)
from analytics.console.statuses import SERVER_ERROR, status_of
from analytics.console.users import bootstrap_key
from analytics.warehouse import Warehouse
from loraloop.exceptions import LoraloopError

logger = logging.getLogger(__name__)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
BODYLESS_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_API_PATHS: Final = frozenset({"/api/health"})
"""Paths under ``/api/`` that need no key."""


async def _error(request: Request, error: Exception) -> Response:
    assert isinstance(error, LoraloopError)  # noqa: S101 (registered for LoraloopError only)
    status = status_of(error)
    if status >= SERVER_ERROR:
        logger.error("%s %s failed: %s", request.method, request.url.path, error)
    if request.url.path.startswith("/api/"):
        body = {"error": type(error).__name__, "detail": str(error)}
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, NotAuthenticated) else {}
        return JSONResponse(body, status_code=status, headers=headers)
    if isinstance(error, NotAuthenticated) and request.method == "GET":
        return pages.login_redirect()
    return pages.render(
        request, "error.html", None, status, status=status, title=type(error).__name__,
        detail=str(error),
    )  # fmt: skip


async def _headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        return _non_finite(text)
    return value


def _non_finite(text: str) -> float:
    msg = f"JSON numbers must be finite, got {text}: send a number (or null)"
    raise InvalidRequest(msg)


def check_json(body: bytes) -> None:
    """Refuse a JSON body with NaN, Infinity or an out-of-range float, or nested too deep.

    Malformed JSON is left to FastAPI (its 422 names the position).
    """
    try:
        json.loads(body, parse_constant=_non_finite, parse_float=_finite_float)
    except RecursionError as e:
        msg = "the JSON body is nested too deep: flatten it"
        raise InvalidRequest(msg) from e
    except ValueError:
        return


class RequestGuard:
    """Checks an API request's key before its body is read, and bounds the body.

    FastAPI reads a body parameter before it resolves the endpoint's dependencies,
    so without this an unauthenticated caller could make the console buffer any
    body. Here, in order: a missing or wrong key under ``/api/`` is 401 without
    reading the body; a body over ``max_body_bytes`` (declared or streamed) is 413;
    a JSON body with non-finite numbers is 422. The body read is then replayed.
    """

    def __init__(self, app: ASGIApp, ctx: ConsoleContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            path = request.url.path
            if path.startswith("/api/") and path not in OPEN_API_PATHS:
                authorization = request.headers.get("authorization", "")
                await self.ctx.warehouse.run(key_principal, self.ctx, authorization)
            body = await self._read(request, receive)
            if "json" in request.headers.get("content-type", ""):
                check_json(body)
        except LoraloopError as error:
            response = await _error(request, error)
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, request: Request, receive: Receive) -> bytes:
        limit = self.ctx.settings.max_body_bytes
        too_large = (
            f"the request body is over {limit} bytes (LORALOOP_CONSOLE__MAX_BODY_BYTES): send less"
        )
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                msg = f"Content-Length {declared!r} is not a byte count"
                raise InvalidRequest(msg)
            if int(declared) > limit:
                raise BodyTooLarge(too_large)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def create_console(
    *,
    warehouse: Warehouse,
    settings: ConsoleSettings,
    extra_routers: Sequence[APIRouter] = (),
    lag_provider: LagProvider | None = None,
    serving_problem: ServingProblem | None = None,
) -> FastAPI:
    """The review console on a migrated ``warehouse``; makes sure the bootstrap admin exists.

    ``extra_routers`` are mounted as they are (e.g. another component's ``/v1/...``).
    ``lag_provider`` returns the stream consumer's lag per topic for the dashboards
    (None: the dashboards show "n/a"). ``serving_problem`` says why the rollout service
    cannot serve the rollout's adapters (``/api/health`` answers 503 with it).
    """
    ctx = ConsoleContext.build(warehouse, settings)
    ctx.lag_provider = lag_provider
    ctx.serving_problem = serving_problem
    ctx.users.ensure_admin(bootstrap_key(settings))
    app = FastAPI(title="loraloop review console", docs_url="/api/docs", redoc_url=None)
    app.state.console = ctx
    app.add_middleware(RequestGuard, ctx=ctx)
    app.middleware("http")(_headers)
    app.add_exception_handler(LoraloopError, _error)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(dashboards.router)
    for router in extra_routers:
        app.include_router(router)
    return app
