"""``loraloop web`` keeps the API description behind the service key, as ``up`` does."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from loraloop.cli.web import web_app
from tests.pool_seed import fresh_warehouse
from tests.unit.console.conftest import console_settings

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
