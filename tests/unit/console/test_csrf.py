"""Every HTML form needs its CSRF token."""

from __future__ import annotations

from tests.unit.console.conftest import Console


def _label_form(token: str | None) -> dict[str, str]:
    form = {
        "acceptance": "Accept",
        "risk_level": "low",
    }
    if token is not None:
        form["csrf_token"] = token
    return form


def test_form_without_token_is_refused(console: Console) -> None:
    console.login("lena")
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=_label_form(None), follow_redirects=False
    )
    assert response.status_code == 403
    assert "CSRF" in response.text


def test_form_with_wrong_token_is_refused(console: Console) -> None:
    console.login("lena")
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=_label_form("forged"), follow_redirects=False
    )
    assert response.status_code == 403


def test_form_with_token_labels(console: Console) -> None:
    console.login("lena")
    token = console.csrf(f"/samples/{console.sample_id}")
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=_label_form(token), follow_redirects=True
    )
    assert response.status_code == 200
    assert "labelled: now rejected" in response.text


def test_login_needs_double_submit_token(console: Console) -> None:
    console.client.get("/login")
    response = console.client.post(
        "/login", data={"username": "lena", "api_key": console.keys["lena"], "csrf_token": "x"}
    )
    assert response.status_code == 403


def test_token_is_bound_to_the_session(console: Console) -> None:
    console.login("lena")
    token = console.csrf("/queue")
    console.client.cookies.clear()
    console.login("lena")
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=_label_form(token), follow_redirects=False
    )
    assert response.status_code == 403
