"""At least one enabled admin stays; `loraloop admin recover` restores one (issue 16 #12)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics.console.app import create_console
from analytics.console.context import ConsoleContext
from analytics.warehouse import Warehouse
from loraloop.cli import app
from loraloop.lifecycle import Role
from tests.unit.console.conftest import ADMIN_KEY, Console, console_settings


def _ctx(console: Console) -> ConsoleContext:
    ctx: ConsoleContext = console.client.app.state.console  # type: ignore[attr-defined]
    return ctx


def _admin_form(console: Console, username: str, **form: Any) -> int:
    token = console.csrf("/admin")
    response = console.client.post(f"/admin/users/{username}", data={**form, "csrf_token": token})
    return response.status_code


def test_last_admin_cannot_be_disabled_or_demoted(console: Console) -> None:
    console.login("admin")
    assert _admin_form(console, "admin", action="disable") == 409
    assert _admin_form(console, "admin", action="roles", roles="labeller") == 409
    user = _ctx(console).users.get("admin")
    assert user is not None
    assert not user.disabled
    assert user.roles == ("admin",)


def test_an_admin_may_go_while_another_stays(console: Console) -> None:
    made = console.client.post(
        "/api/users", json={"username": "root", "roles": ["admin"]},
        headers=console.bearer("admin"),
    )  # fmt: skip
    assert made.status_code == 201, made.text
    console.login("admin")
    assert _admin_form(console, "root", action="disable") == 200
    assert _admin_form(console, "admin", action="disable") == 409
    assert _admin_form(console, "root", action="enable") == 200
    assert _admin_form(console, "admin", action="disable") == 200


def test_admin_recover_restores_a_locked_out_admin(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _ctx(console).users
    locked = store.get("admin")
    assert locked is not None
    # The state the old console allowed: the only admin disabled and demoted.
    store._write(
        locked.model_copy(update={"disabled": True, "roles": (Role.LABELLER,), "revision": 99})
    )
    assert console.client.get("/api/users", headers=console.bearer("admin")).status_code == 401

    class Shared:
        """The test's warehouse, left open when the command closes it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(console.warehouse, name)

        def close(self) -> None:
            return None

    def shared(*_args: object, **_kwargs: object) -> Shared:
        return Shared()

    monkeypatch.setattr(Warehouse, "from_settings", shared)
    monkeypatch.delenv("LORALOOP_CONSOLE__ADMIN_KEY", raising=False)
    data_dir = tmp_path / "operator"
    result = CliRunner().invoke(app, ["admin", "recover", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    key_file = data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text(encoding="utf-8").strip()
    listed = console.client.get("/api/users", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200, listed.text
    admin = next(u for u in listed.json() if u["username"] == "admin")
    assert admin["disabled"] is False
    assert "admin" in admin["roles"]


def test_a_restart_restores_the_bootstrap_admin(console: Console, tmp_path: Path) -> None:
    store = _ctx(console).users
    locked = store.get("admin")
    assert locked is not None
    store._write(
        locked.model_copy(update={"disabled": True, "roles": (Role.LABELLER,), "revision": 99})
    )
    create_console(warehouse=console.warehouse, settings=console_settings(tmp_path))
    restored = store.get("admin")
    assert restored is not None
    assert not restored.disabled
    assert Role.ADMIN in restored.roles
    listed = console.client.get("/api/users", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert listed.status_code == 200, listed.text
