"""The console under abuse: malformed input is 4xx with a message, never 500 (issue 16)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

from analytics.console.auth import LOGIN_CSRF_COOKIE
from analytics.rows import COLUMNS
from tests.pool_seed import T0
from tests.unit.console.conftest import Console

LABEL_FORM = {"acceptance": "Accept", "risk_level": "low"}


# ---------------------------------------------------------------- 17: no unauthenticated 500s


def test_non_ascii_csrf_token_is_403_not_500(console: Console) -> None:
    console.login("lena")
    response = console.client.post(
        f"/samples/{console.sample_id}/label",
        data={**LABEL_FORM, "csrf_token": "ä" * 64},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "CSRF" in response.text


def test_non_ascii_login_csrf_is_403_not_500(console: Console) -> None:
    console.client.cookies.set(LOGIN_CSRF_COOKIE, "token")
    response = console.client.post(
        "/login", data={"username": "lena", "api_key": "x", "csrf_token": "tökén"}
    )
    assert response.status_code == 403


def test_non_ascii_cookie_signature_is_logged_out_not_500(console: Console) -> None:
    console.login("lena")
    cookie = console.client.cookies.get("loraloop_session")
    assert cookie is not None
    payload = cookie.partition(".")[0]
    console.client.cookies.clear()
    # httpx sends header values as latin-1: a non-ASCII signature reaches the server.
    headers = {b"Cookie": f"loraloop_session={payload}.\u00e9\u00e9".encode("latin-1")}
    response = console.client.get("/queue", headers=headers, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_non_ascii_cookie_signature_on_a_form_post_is_4xx(console: Console) -> None:
    headers = {b"Cookie": "loraloop_session=eyJ1IjoiYSJ9.\u00e9".encode("latin-1")}
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=LABEL_FORM, headers=headers,
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 401


def test_queue_offset_not_a_number_is_422(console: Console) -> None:
    console.login("lena")
    response = console.client.get("/queue?offset=abc")
    assert response.status_code == 422
    assert "offset" in response.text


def test_queue_risk_min_not_a_number_is_422(console: Console) -> None:
    console.login("lena")
    for value in ("abc", "nan", "inf"):
        response = console.client.get(f"/queue?risk_min={value}")
        assert response.status_code == 422, value
        assert "risk_min" in response.text
    assert console.client.get("/queue?offset=" + "9" * 30).status_code == 422


def test_api_offset_and_risk_min_not_numbers_are_422(console: Console) -> None:
    for query in ("offset=abc", "risk_min=abc"):
        response = console.client.get(f"/api/samples?{query}", headers=console.bearer("lena"))
        assert response.status_code == 422, query


def test_nan_in_a_json_body_is_422(console: Console) -> None:
    for constant in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = '{"acceptance": "Reject", "risk_level": "high", "notes": ' + constant + "}"
        response = console.client.post(
            f"/api/samples/{console.sample_id}/label", content=body,
            headers={**console.bearer("lena"), "Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 422, (constant, response.text)
        assert "finite" in response.json()["detail"]


def test_deeply_nested_json_is_4xx(console: Console) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = console.client.post(
        f"/api/samples/{console.sample_id}/transition", content=body,
        headers={**console.bearer("ari"), "Content-Type": "application/json"},
    )  # fmt: skip
    assert 400 <= response.status_code < 500, response.text


def test_long_transcript_is_paged(console: Console) -> None:
    extra = 1_000
    rows = [
        [
            f"c1-x{i}", T0 + timedelta(seconds=10 + i), "c1", "u1", 10 + i, "user",
            f"turn number {i}", "", False,
        ]
        for i in range(extra)
    ]  # fmt: skip
    console.warehouse.insert("turns", rows, column_names=COLUMNS["turns"])
    console.login("lena")
    page = console.client.get(f"/samples/{console.sample_id}")
    assert page.status_code == 200
    shown = len(re.findall(r'<li class="turn ', page.text))
    assert shown == 200
    assert 'id="turns-next"' in page.text
    assert 'id="turns-prev"' not in page.text
    last = console.client.get(f"/samples/{console.sample_id}?turns=1000")
    assert len(re.findall(r'<li class="turn ', last.text)) == extra + 4 - 1000
    assert "turn number 999" in last.text
    assert 'id="turns-prev"' in last.text
    assert console.client.get(f"/samples/{console.sample_id}?turns=x").status_code == 422


# ---------------------------------------------------------------- 11: key first, bounded body


def test_unauthenticated_body_is_refused_before_it_is_read(console: Console) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * 1024

    response = console.client.post(
        f"/api/samples/{console.sample_id}/label", content=body(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    # Before the fix FastAPI parsed the (invalid) body first and answered 422.
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_oversize_body_is_413(console: Console) -> None:
    limit = 1024 * 1024
    body = b'{"notes": "' + b"x" * limit + b'"}'
    response = console.client.post(
        f"/api/samples/{console.sample_id}/label", content=body,
        headers={**console.bearer("lena"), "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in response.json()["detail"]


def test_oversize_streamed_body_is_413(console: Console) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(2 * 1024):
            yield b"x" * 1024

    response = console.client.post(
        f"/api/samples/{console.sample_id}/label", content=body(),
        headers={**console.bearer("lena"), "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413


def test_oversize_login_form_is_413(console: Console) -> None:
    response = console.client.post("/login", content=b"a=" + b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413


def test_body_within_the_limit_still_works(console: Console) -> None:
    body = {"acceptance": "Reject", "risk_level": "high", "problem_types": ["over_promise"],
            "corrected_response": "ok", "notes": "n" * 1000}  # fmt: skip
    response = console.client.post(
        f"/api/samples/{console.sample_id}/label", json=body, headers=console.bearer("lena")
    )
    assert response.status_code == 200, response.text
