"""Which version serves a user: the stack's router, in process or over ``GET /v1/route``.

Every decision here is a *served* one (the reply is generated with it now), so the
in-process source calls :meth:`trainer.router.Router.route` (which records the user's
first exposure) and the remote one sends ``serve=true``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp
import orjson

from gateway.errors import UpstreamError
from gateway.limits import Lru
from loraloop.service_key import bearer_header
from trainer.router import RouteDecision, Router

logger = logging.getLogger(__name__)


class VersionSource(Protocol):
    """Routes one served request of ``user_id``."""

    async def route(self, user_id: str) -> RouteDecision: ...

    async def aclose(self) -> None: ...


class RouterSource:
    """The router of this process (``loraloop up``, tests, the benchmark).

    ``blocking``: the router records assignments to the warehouse (a full batch is
    written inside ``route``), so each call runs in a worker thread, off the event loop.
    """

    def __init__(self, router: Router, *, blocking: bool = False) -> None:
        self._router = router
        self._blocking = blocking

    async def route(self, user_id: str) -> RouteDecision:
        if self._blocking:
            return await asyncio.to_thread(self._router.route, user_id)
        return self._router.route(user_id)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._router.flush)


class RemoteSource:
    """The stack's ``GET /v1/route?serve=true``, each user's answer reused for ``cache_s``."""

    def __init__(
        self,
        *,
        url: str,
        service_key: str,
        timeout_s: float,
        cache_s: float,
        cache_users: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url.rstrip("/") + "/v1/route"
        self._headers = bearer_header(service_key)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._cache_s = cache_s
        self._cache: Lru[str, tuple[float, RouteDecision]] = Lru(cache_users)
        self._clock = clock

    async def route(self, user_id: str) -> RouteDecision:
        now = self._clock()
        cached = self._cache.get(user_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        decision = await self._ask(user_id)
        self._cache.put(user_id, (now, decision))
        return decision

    async def _ask(self, user_id: str) -> RouteDecision:
        if self._session is None:  # made on the serving loop, which aiohttp binds to
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        params = {"user_id": user_id, "serve": "true"}
        try:
            async with self._session.get(self._url, params=params) as response:
                response.raise_for_status()
                body = orjson.loads(await response.read())
            return RouteDecision(
                version=str(body["version"]),
                adapter_name=str(body["adapter"]),
                is_canary=bool(body["canary"]),
            )
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, KeyError) as e:
            msg = (
                f"the router at {self._url} did not answer ({type(e).__name__}: {e}); check "
                "that `loraloop up` runs and LORALOOP_GATEWAY__ROUTE_URL points at its console"
            )
            raise UpstreamError(msg, code="router_unavailable") from e

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
