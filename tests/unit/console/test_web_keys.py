"""``loraloop web`` keeps the API description behind the service key, as ``up`` does."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from loraloop.cli.web import ServingState, _serve, web_app
from streams.broker import free_port
from tests.pool_seed import fresh_warehouse
from tests.registry_seed import register_version
from tests.unit.console.conftest import console_settings
from trainer.registry import Registry
from trainer.rollout_service import router_for_stack
from trainer.route_api import make_route_router
from trainer.versions import VersionStatus

SERVICE_KEY = "service-key-for-the-web-test"


def test_api_docs_and_schema_need_the_service_key_pages_do_not(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as warehouse:
        app = web_app(warehouse, console_settings(tmp_path), SERVICE_KEY)
        with TestClient(app, base_url="http://testserver") as client:
            for path in ("/api/docs", "/openapi.json"):
                refused = client.get(path)
                assert refused.status_code == 401, path
                assert "service key" in refused.json()["detail"]
                wrong = client.get(path, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401, path
                allowed = client.get(path, headers={"Authorization": f"Bearer {SERVICE_KEY}"})
                assert allowed.status_code == 200, path
            assert client.get("/login").status_code == 200


def test_web_serves_the_route_and_runs_the_rollout_service_beside_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose topology: `loraloop web` is where gateways ask /v1/route and where gated
    versions are rolled out (no `up` runs there)."""
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__TICK_INTERVAL_S", "60")
    with fresh_warehouse(tmp_path) as warehouse:
        registry = Registry(tmp_path / "registry")
        name = register_version(warehouse, registry, parent=None, at=datetime.now(UTC))
        router = router_for_stack(warehouse)
        port = free_port()
        app = web_app(
            warehouse,
            console_settings(tmp_path),
            SERVICE_KEY,
            routers=[make_route_router(router, service_key=SERVICE_KEY)],
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )

        async def scenario() -> tuple[int, dict[str, object], str]:
            serving = asyncio.create_task(
                _serve(server, warehouse, router, registry, ServingState())
            )
            deadline = time.monotonic() + 30
            while registry.get(name).status is not VersionStatus.CANARY:
                assert time.monotonic() < deadline, "the rollout service never started the canary"
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                denied = await http.get("/v1/route", params={"user_id": "u1"})
                answer = await http.get(
                    "/v1/route",
                    params={"user_id": "u1"},
                    headers={"Authorization": f"Bearer {SERVICE_KEY}"},
                )
            server.should_exit = True
            await serving
            return denied.status_code, answer.json(), registry.get(name).status.value

        denied, answer, status = asyncio.run(scenario())
    assert denied == 401
    assert answer["version"] in {"base", name}
    assert status == "canary"
    assert router.table.canary == name


def test_web_health_reports_a_replica_that_cannot_serve_the_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gated version waits for an unreachable adapter replica: /api/health says so (503)."""
    replica = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__TICK_INTERVAL_S", "60")
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__ADAPTER_REPLICAS", f'["{replica}/v1"]')
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__ADAPTER_REPLICA_TIMEOUT_S", "1")
    with fresh_warehouse(tmp_path) as warehouse:
        registry = Registry(tmp_path / "registry")
        name = register_version(warehouse, registry, parent=None, at=datetime.now(UTC))
        router = router_for_stack(warehouse)
        state = ServingState()
        port = free_port()
        app = web_app(
            warehouse, console_settings(tmp_path), SERVICE_KEY, serving_problem=state.problem
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )

        async def scenario() -> tuple[int, dict[str, object]]:
            serving = asyncio.create_task(_serve(server, warehouse, router, registry, state))
            deadline = time.monotonic() + 30
            while state.problem() is None:
                assert time.monotonic() < deadline, "the rollout service reported no problem"
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                health = await http.get("/api/health")
            server.should_exit = True
            await serving
            return health.status_code, health.json()

        status, body = asyncio.run(scenario())
        assert registry.get(name).status is VersionStatus.TRAINED  # held: no user routed to it
    assert status == 503
    assert body["status"] == "degraded"
    assert replica in str(body["serving"])
    assert name in str(body["serving"])
