"""A console over a real embedded warehouse, with one user per role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from analytics.console.app import create_console
from analytics.console.config import ConsoleSettings
from analytics.warehouse import Warehouse
from tests.pool_seed import fresh_warehouse, seed_sample

ADMIN_KEY = "admin-test-key-0123456789"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(data_dir: Path) -> ConsoleSettings:
    """Fast key hashing, a fixed admin key, files under ``data_dir``."""
    return ConsoleSettings(
        data_dir=data_dir, admin_key=SecretStr(ADMIN_KEY), scrypt_n=16, scrypt_r=1
    )


@dataclass
class Console:
    client: TestClient
    warehouse: Warehouse
    keys: dict[str, str]
    sample_id: str

    def bearer(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def login(self, user: str) -> TestClient:
        """Log ``user`` in through the form; the client keeps the session cookie."""
        page = self.client.get("/login")
        token = CSRF_RE.search(page.text)
        assert token is not None
        response = self.client.post(
            "/login",
            data={"username": user, "api_key": self.keys[user], "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return self.client

    def csrf(self, path: str) -> str:
        token = CSRF_RE.search(self.client.get(path).text)
        assert token is not None
        return token[1]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with fresh_warehouse(tmp_path) as warehouse:
        sample_id = seed_sample(warehouse, "c1")
        app = create_console(warehouse=warehouse, settings=console_settings(tmp_path))
        with TestClient(app, base_url="http://testserver") as client:
            keys = {"admin": ADMIN_KEY}
            for name, roles, pii in (
                ("lena", ["labeller"], False),
                ("ari", ["approver"], True),
                ("trainer", ["system"], False),
            ):
                made = client.post(
                    "/api/users",
                    json={"username": name, "roles": roles, "pii": pii},
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                )
                assert made.status_code == 201, made.text
                keys[name] = made.json()["api_key"]
            yield Console(client, warehouse, keys, sample_id)


def cli_as(console: Console, monkeypatch: pytest.MonkeyPatch, user: str) -> CliRunner:
    """A CLI runner whose HTTP calls go to the test console, with ``user``'s API key."""

    def request(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return console.client.request(method, url, **kwargs)

    monkeypatch.setattr(httpx, "request", request)
    monkeypatch.setenv("LORALOOP_API_KEY", console.keys[user])
    return CliRunner()
