"""Logout ends the session and its CSRF token; a planted login token is refused (issue 16 #14)."""

from __future__ import annotations

from analytics.console.auth import LOGIN_CSRF_COOKIE
from tests.unit.console.conftest import CSRF_RE, Console


def test_logout_ends_the_session_and_its_csrf_token(console: Console) -> None:
    console.login("lena")
    cookie = console.client.cookies.get("loraloop_session")
    assert cookie is not None
    token = console.csrf("/queue")
    logout = console.client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert logout.status_code == 303
    # A copy of the cookie taken before logout (stolen, or another tab) is dead too.
    console.client.cookies.set("loraloop_session", cookie)
    page = console.client.get("/queue", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    form = {"acceptance": "Accept", "risk_level": "low", "csrf_token": token}
    replay = console.client.post(
        f"/samples/{console.sample_id}/label", data=form, follow_redirects=False
    )
    assert replay.status_code == 401


def test_a_new_login_after_logout_works(console: Console) -> None:
    console.login("lena")
    token = console.csrf("/queue")
    console.client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    console.client.cookies.clear()
    console.login("lena")
    assert console.client.get("/queue", follow_redirects=False).status_code == 200


def test_login_rotates_the_session(console: Console) -> None:
    console.login("lena")
    first = console.client.cookies.get("loraloop_session")
    console.client.cookies.clear()
    console.login("lena")
    assert console.client.cookies.get("loraloop_session") != first


def test_a_planted_login_csrf_cookie_is_not_reused(console: Console) -> None:
    console.client.cookies.set(LOGIN_CSRF_COOKIE, "planted-by-attacker")
    page = console.client.get("/login")
    token = CSRF_RE.search(page.text)
    assert token is not None
    assert token[1] != "planted-by-attacker"
    console.client.cookies.set(LOGIN_CSRF_COOKIE, "planted-by-attacker")
    forged = console.client.post(
        "/login",
        data={
            "username": "lena",
            "api_key": console.keys["lena"],
            "csrf_token": "planted-by-attacker",
        },
        follow_redirects=False,
    )
    assert forged.status_code == 403
