"""The gateway's small parts: its key file, the per-user rate, turn indices."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.errors import RateLimitError
from gateway.keys import gateway_key, gateway_key_file
from gateway.limits import RateLimiter
from gateway.traffic import TurnIndex
from loraloop.exceptions import ConfigError


def test_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LORALOOP_GATEWAY__API_KEY"):
        gateway_key(tmp_path, None, create=False)
    key = gateway_key(tmp_path, None)
    assert stat.S_IMODE(gateway_key_file(tmp_path).stat().st_mode) == 0o600
    assert gateway_key(tmp_path, None) == key
    assert gateway_key(tmp_path, None, create=False) == key
    assert gateway_key(tmp_path, SecretStr("configured")) == "configured"


def test_rate_refills_per_user() -> None:
    now = [0.0]
    limiter = RateLimiter(per_s=2.0, burst=2, keys=10, clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimitError) as caught:
        limiter.take("a")
    assert caught.value.retry_after_s == pytest.approx(0.5)
    limiter.take("b")
    now[0] = 0.5
    limiter.take("a")


def test_rate_zero_is_off() -> None:
    limiter = RateLimiter(per_s=0, burst=1, keys=1)
    for _ in range(100):
        limiter.take("a")


def test_turn_indices_continue_from_history_or_memory() -> None:
    turns = TurnIndex(conversations=10)
    assert turns.claim("c", prior_turns=0) == 0
    assert turns.claim("c", prior_turns=0) == 2  # the client sent only its newest message
    assert turns.claim("c", prior_turns=4) == 4  # the full history
    assert turns.claim("d", prior_turns=6) == 6  # a history the gateway never saw


def test_remote_router_is_asked_once_per_user_within_the_cache() -> None:
    from fastapi import FastAPI

    from gateway.errors import UpstreamError
    from gateway.routing import RemoteSource
    from tests.unit.gateway.fakes import Server, dead_url, table_router
    from trainer.route_api import make_route_router

    asked: list[str] = []
    router = table_router()
    app = FastAPI()
    app.include_router(make_route_router(router, service_key="k"))

    @app.middleware("http")
    async def count(request: Any, call_next: Any) -> Any:
        asked.append(request.query_params["user_id"])
        return await call_next(request)

    async def ask(url: str, key: str = "k") -> list[str]:
        now = [0.0]
        source = RemoteSource(url=url, service_key=key, timeout_s=5, cache_s=1.0,
                              cache_users=10, clock=lambda: now[0])  # fmt: skip
        try:
            versions = [(await source.route(u)).version for u in ("a", "a", "b")]
            now[0] = 2.0
            versions.append((await source.route("a")).version)
            return versions
        finally:
            await source.aclose()

    with Server(app) as served:
        versions = asyncio.run(ask(served.url))
        assert asked == ["a", "b", "a"]
        assert versions == [router.assign(u).version for u in ("a", "a", "b", "a")]
        with pytest.raises(UpstreamError, match="401"):
            asyncio.run(ask(served.url, key="wrong"))
    with pytest.raises(UpstreamError) as caught:
        asyncio.run(ask(dead_url().removesuffix("/v1")))
    assert caught.value.code == "router_unavailable"
