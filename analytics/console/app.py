"""The console's FastAPI app factory."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from analytics import pool
from analytics.console import api, dashboards, pages
from analytics.console.config import ConsoleSettings
from analytics.console.context import ConsoleContext, LagProvider
from analytics.console.exceptions import ConsoleError, NotAuthenticated
from analytics.console.users import bootstrap_key
from analytics.exceptions import WarehouseError
from analytics.warehouse import Warehouse
from loraloop.exceptions import LoraloopError

logger = logging.getLogger(__name__)

STATUS_OF: Final[tuple[tuple[type[LoraloopError], int], ...]] = (
    (pool.SampleNotFound, 404),
    (pool.ActionForbidden, 403),
    (pool.ActionConflict, 409),
    (pool.InvalidAction, 422),
    (WarehouseError, 503),
)
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
SERVER_ERROR = 500


def status_of(error: LoraloopError) -> int:
    """The HTTP status of a loraloop error."""
    if isinstance(error, ConsoleError):
        return error.status_code
    for kind, status in STATUS_OF:
        if isinstance(error, kind):
            return status
    return SERVER_ERROR


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


def create_console(
    *,
    warehouse: Warehouse,
    settings: ConsoleSettings,
    extra_routers: Sequence[APIRouter] = (),
    lag_provider: LagProvider | None = None,
) -> FastAPI:
    """The review console on a migrated ``warehouse``; makes sure the bootstrap admin exists.

    ``extra_routers`` are mounted as they are (e.g. another component's ``/v1/...``).
    ``lag_provider`` returns the stream consumer's lag per topic for the dashboards
    (None: the dashboards show "n/a").
    """
    ctx = ConsoleContext.build(warehouse, settings)
    ctx.lag_provider = lag_provider
    ctx.users.ensure_admin(bootstrap_key(settings))
    app = FastAPI(title="loraloop review console", docs_url="/api/docs", redoc_url=None)
    app.state.console = ctx
    app.middleware("http")(_headers)
    app.add_exception_handler(LoraloopError, _error)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(dashboards.router)
    for router in extra_routers:
        app.include_router(router)
    return app
