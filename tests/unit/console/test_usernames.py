"""Usernames are normalised; reserved names and look-alikes are refused (issue 16 #13)."""

from __future__ import annotations

import pytest

from tests.unit.console.conftest import Console


def _create(console: Console, name: str, roles: list[str] | None = None) -> tuple[int, str]:
    made = console.client.post(
        "/api/users",
        json={"username": name, "roles": roles or ["labeller"]},
        headers=console.bearer("admin"),
    )
    return made.status_code, made.text


@pytest.mark.parametrize(
    "name",
    [
        "sampler",  # the capture actor
        "trainer",  # the trainer's actor (exists as a system user in the fixture)
        "Sampler",
        "system",
        "Admin",  # case look-alike of the admin
        "ADMIN",
        "\u0430dmin",  # Cyrillic а
        "ad\u200bmin",  # zero-width space
        "admin\n",  # newline after casefold+strip is admin: an existing name
        "adm\nin",  # newline inside
        "\u202enimda",  # RLO
        "adrnin",  # rn looks like m
        "ad-min",  # separators dropped
        "１ena",  # fullwidth digit: NFKC gives 1ena, which looks like lena
        "a/b",  # a slash breaks the /admin/users/{username} route
        "../admin",
        "lena ",  # trailing space: lena exists
        "x" * 129,  # over the actor column's limit
    ],
)
def test_reserved_confusable_and_unsafe_names_are_refused(console: Console, name: str) -> None:
    status, text = _create(console, name)
    assert status == 422, (name, text)


def test_names_are_stored_casefolded(console: Console) -> None:
    status, text = _create(console, "Bob.Smith")
    assert status == 201, text
    names = [u["username"] for u in console.client.get(
        "/api/users", headers=console.bearer("admin")
    ).json()]  # fmt: skip
    assert "bob.smith" in names
    assert _create(console, "BOB.SMITH")[0] == 422


def test_a_system_user_may_take_a_system_actor_name(console: Console) -> None:
    status, text = _create(console, "sampler", ["system"])
    assert status == 201, text


def test_login_ignores_case(console: Console) -> None:
    page = console.client.get("/login")
    token = console.csrf("/login")
    assert page.status_code == 200
    response = console.client.post(
        "/login",
        data={"username": "LENA", "api_key": console.keys["lena"], "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_admin_form_refuses_a_slash(console: Console) -> None:
    console.login("admin")
    token = console.csrf("/admin")
    response = console.client.post(
        "/admin/users", data={"username": "x/y", "roles": "labeller", "csrf_token": token}
    )
    assert response.status_code == 422
    assert "ASCII letters" in response.text
