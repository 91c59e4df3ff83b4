"""Authentication: API keys, sessions, the bootstrap admin, disabled users."""

from __future__ import annotations

import stat
from pathlib import Path

from analytics.console.config import ConsoleSettings
from analytics.console.users import bootstrap_key, hash_key, verify_key
from tests.unit.console.conftest import Console


def test_health_needs_no_key(console: Console) -> None:
    assert console.client.get("/api/health").json()["status"] == "ok"


def test_api_without_or_with_bad_key_is_401(console: Console) -> None:
    assert console.client.get("/api/samples").status_code == 401
    bad = console.client.get("/api/samples", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "NotAuthenticated"
    assert bad.headers["WWW-Authenticate"] == "Bearer"


def test_pages_redirect_to_login(console: Console) -> None:
    response = console.client.get("/queue", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_login_sets_strict_httponly_cookie(console: Console) -> None:
    console.login("lena")
    cookie = next(c for c in console.client.cookies.jar if c.name == "loraloop_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert console.client.get("/queue").status_code == 200


def test_login_cookie_header_is_samesite_strict(console: Console) -> None:
    page = console.client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = console.client.post(
        "/login",
        data={"username": "lena", "api_key": console.keys["lena"], "csrf_token": token},
        follow_redirects=False,
    )
    header = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v
    )
    assert "httponly" in header.lower()
    assert "samesite=strict" in header.lower()


def test_wrong_key_for_user_is_refused(console: Console) -> None:
    page = console.client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = console.client.post(
        "/login",
        data={"username": "ari", "api_key": console.keys["lena"], "csrf_token": token},
    )
    assert response.status_code == 401
    assert "unknown user or key" in response.text


def test_disabled_user_and_rotated_key(console: Console) -> None:
    admin = console.bearer("admin")
    console.login("lena")
    assert console.client.get("/queue").status_code == 200
    users = console.client.get("/api/users", headers=admin).json()
    assert {u["username"] for u in users} == {"admin", "lena", "ari", "trainer"}
    assert all("key_hash" not in u for u in users)
    ctx = console.client.app.state.console  # type: ignore[attr-defined]
    ctx.users.update("lena", disabled=True)
    assert console.client.get("/queue", follow_redirects=False).status_code == 303
    assert console.client.get("/api/samples", headers=console.bearer("lena")).status_code == 401
    _, key = ctx.users.update("ari", rotate_key=True)
    assert console.client.get("/api/samples", headers=console.bearer("ari")).status_code == 401
    ok = console.client.get("/api/samples", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200


def test_keys_are_stored_hashed(console: Console) -> None:
    rows = console.warehouse.query("SELECT key_hash FROM console_users FINAL").result_rows
    assert all(r[0].startswith("scrypt$") for r in rows)
    assert not any(console.keys["lena"] in r[0] for r in rows)
    stored = hash_key("k", ConsoleSettings(data_dir=Path("."), scrypt_n=16, scrypt_r=1))
    assert verify_key("k", stored)
    assert not verify_key("x", stored)
    assert not verify_key("k", "garbage")


def test_generated_admin_key_file_is_private(tmp_path: Path) -> None:
    settings = ConsoleSettings(data_dir=tmp_path, scrypt_n=16, scrypt_r=1)
    key = bootstrap_key(settings)
    mode = stat.S_IMODE(settings.admin_key_file.stat().st_mode)
    assert mode == 0o600
    assert bootstrap_key(settings) == key


def test_security_headers(console: Console) -> None:
    response = console.client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
