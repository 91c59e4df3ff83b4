"""The canary router: sticky, nested, allowlisted, proportional; assignments recorded once."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from analytics.stats import ComparisonSettings, check_health, srm_p_value
from loraloop.events import MAX_ID_CHARS
from trainer.assignments import AssignmentRecorder, Pair
from trainer.rollout_config import RolloutSettings
from trainer.rollout_errors import RoutingError
from trainer.route_api import make_route_router
from trainer.router import BUCKETS, Router, RoutingTable, bucket_of

PREV, NEW = "model_v1", "model_v2"
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _router(share: float, **settings: object) -> Router:
    return Router(RoutingTable(PREV, NEW, share), settings=RolloutSettings(**settings))


def _canary(router: Router, users: int) -> set[str]:
    return {f"user-{i}" for i in range(users) if router.assign(f"user-{i}").is_canary}


def test_sticky_across_calls_and_instances() -> None:
    first, second = _router(25), _router(25)
    for i in range(2000):
        user = f"user-{i}"
        decision = first.route(user)
        assert decision == first.route(user) == second.route(user)
        assert decision.adapter_name == decision.version
        assert decision.version == (NEW if decision.is_canary else PREV)


def test_salt_changes_buckets() -> None:
    users = [f"user-{i}" for i in range(200)]
    assert [bucket_of(u, "a") for u in users] != [bucket_of(u, "b") for u in users]
    assert all(0 <= bucket_of(u, "a") < BUCKETS for u in users)


def test_raising_the_share_never_moves_a_canary_user_back() -> None:
    router = _router(1)
    previous: set[str] = set()
    for share in (1, 5, 25, 50, 100):
        router.update(RoutingTable(PREV, NEW, share))
        canary = _canary(router, 20_000)
        assert previous <= canary
        previous = canary
    assert len(previous) == 20_000


def test_allowlisted_users_always_get_the_canary() -> None:
    router = _router(0, allowlist=["qa-1", "qa-2"])
    assert router.route("qa-1").is_canary
    assert router.route("qa-2").version == NEW
    assert not _canary(router, 5_000)
    router.update(RoutingTable(PREV))  # no rollout: nobody gets a canary
    assert router.route("qa-1").version == PREV


@pytest.mark.parametrize("share", [1.0, 5.0, 25.0, 50.0])
def test_split_proportions_over_100k_users(share: float) -> None:
    users = 100_000
    observed = len(_canary(_router(share), users)) / users
    expected = share / 100
    sd = (expected * (1 - expected) / users) ** 0.5
    assert abs(observed - expected) < 5 * sd


def test_srm_does_not_fire_on_a_deliberate_95_5_split() -> None:
    users = 100_000
    canary = len(_canary(_router(5), users))
    counts, shares = [users - canary, canary], [0.95, 0.05]
    assert srm_p_value(counts, shares) > ComparisonSettings().srm_p_threshold
    assert check_health(counts, shares, users_in_both=0).healthy
    assert not check_health(counts, [0.5, 0.5], users_in_both=0).healthy  # a wrong split fires


def test_empty_user_and_bad_tables_are_refused() -> None:
    with pytest.raises(RoutingError, match="user_id"):
        _router(5).route("")
    with pytest.raises(RoutingError, match="share"):
        RoutingTable(PREV, NEW, 101)
    with pytest.raises(RoutingError, match="non-empty"):
        RoutingTable("")


def test_steps_must_rise_to_100() -> None:
    with pytest.raises(ValueError, match="increasing"):
        RolloutSettings(steps=[5, 1, 100])
    with pytest.raises(ValueError, match="end at 100"):
        RolloutSettings(steps=[1, 5, 50])


class MemoryStore:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, datetime]] = []

    def recorded(self, pairs: Collection[Pair]) -> set[Pair]:
        return {(v, u) for u, v, _ in self.rows} & set(pairs)

    def write(self, rows: Sequence[tuple[str, str, datetime]]) -> None:
        self.rows.extend(rows)


def test_assignments_are_recorded_once_at_first_exposure() -> None:
    store = MemoryStore()
    recorder = AssignmentRecorder(store, batch_size=2, cache_size=2)
    clock = iter(T0 + timedelta(seconds=s) for s in (5, 1, 9, 20, 30, 40, 50, 60))
    router = Router(RoutingTable(PREV, NEW, 50), recorder=recorder, clock=lambda: next(clock))
    for user in ("a", "a", "b"):
        router.route(user)
    assert recorder.pending == 0  # a full batch was written
    assert sorted(store.rows) == sorted(
        [("a", router.assign("a").version, T0 + timedelta(seconds=1)),
         ("b", router.assign("b").version, T0 + timedelta(seconds=9))]
    )  # fmt: skip
    for user in ("c", "d", "a", "e"):  # "a" fell out of the cache: the store knows it
        router.route(user)
    assert router.flush() == 0
    assert sorted(u for u, _, _ in store.rows) == ["a", "b", "c", "d", "e"]
    assert min(ts for u, _, ts in store.rows if u == "a") == T0 + timedelta(seconds=1)


KEY = "service-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _get(
    app: FastAPI, params: dict[str, str], headers: dict[str, Any] | None = None
) -> httpx.Response:
    # httpx over the ASGI app directly: starlette's TestClient warns about its httpx use.
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(
                "/v1/route", params=params, headers=AUTH if headers is None else headers
            )

    return asyncio.run(call())


def _route_app(router: Router) -> FastAPI:
    app = FastAPI()
    app.include_router(make_route_router(router, service_key=KEY))
    return app


def test_route_endpoint() -> None:
    app = _route_app(_router(50, allowlist=["tester"]))
    response = _get(app, {"user_id": "tester"})
    assert response.status_code == 200
    assert response.json() == {"version": NEW, "adapter": NEW, "canary": True}
    for params in ({}, {"user_id": ""}, {"user_id": "u" * (MAX_ID_CHARS + 1)}):
        bad = _get(app, params)
        assert bad.status_code == 422
        detail: list[dict[str, Any]] = bad.json()["detail"]
        assert detail[0]["loc"] == ["query", "user_id"]
    assert _get(app, {"user_id": "u" * MAX_ID_CHARS}).status_code == 200


def test_route_endpoint_needs_the_service_key() -> None:
    app = _route_app(_router(50))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                    {"Authorization": ("Bearer " + "é" * 20).encode()}):  # fmt: skip
        refused = _get(app, {"user_id": "u" * 60_000}, headers=headers)
        assert refused.status_code == 401, headers  # before the id is even looked at
        assert "service key" in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"


def test_only_served_routes_are_recorded() -> None:
    store = MemoryStore()
    recorder = AssignmentRecorder(store, batch_size=1, cache_size=10)
    router = Router(RoutingTable(PREV, NEW, 50), recorder=recorder)
    app = _route_app(router)
    for i in range(20):
        looked = _get(app, {"user_id": f"lookup-{i}"})
        assert looked.status_code == 200
    assert store.rows == []  # a lookup writes nothing
    served = _get(app, {"user_id": "served-1", "serve": "true"})
    assert served.status_code == 200
    assert served.json()["version"] == router.assign("served-1").version
    assert [(u, v) for u, v, _ in store.rows] == [("served-1", served.json()["version"])]
