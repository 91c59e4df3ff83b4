"""Console security: endpoint x role matrix, SQL injection, cookies, PII in exports and training.

Runs on the console test client over a real embedded warehouse
(``tests/unit/console/conftest.py``). Every mutating cell gets a fresh sample in
the state its action needs, so a status reflects the role alone, never the order
in which the cells ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from analytics import pool
from analytics.pool_models import SampleFilter
from loraloop.pii import mask_pii
from tests.pool_seed import PII_EMAIL, PII_PHONE, seed_sample
from tests.reliability.figures import record
from tests.trainer_fixtures import make_pool
from tests.unit.console.conftest import Console
from trainer.config import DatasetConfig
from trainer.dataset import build_dataset
from trainer.records import ChatMessage

ROLES = ("anonymous", "labeller", "approver", "admin", "system")
USER_OF = {"labeller": "lena", "approver": "ari", "admin": "admin", "system": "trainer"}
LABEL = {
    "acceptance": "Reject",
    "problem_types": ["over_promise"],
    "risk_level": "high",
    "corrected_response": "I cannot promise a delivery date.",
}
_seq = itertools.count()

Prepare = Callable[[Console], str]


def _captured(console: Console) -> str:
    return seed_sample(console.warehouse, f"sec{next(_seq)}")


def _labelled(console: Console) -> str:
    sid = _captured(console)
    done = console.client.post(
        f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena")
    )
    assert done.status_code == 200, done.text
    return sid


def _baseline(console: Console) -> str:
    sid = _labelled(console)
    done = console.client.post(
        f"/api/samples/{sid}/approve",
        json={"from_status": "problem"},
        headers=console.bearer("ari"),
    )
    assert done.status_code == 200, done.text
    return sid


def _proposed(console: Console) -> str:
    sid = _labelled(console)
    body = {"to_status": "candidate_baseline", "rule": "solved_after_training"}
    done = console.client.post(
        f"/api/samples/{sid}/propose", json=body, headers=console.bearer("trainer")
    )
    assert done.status_code == 200, done.text
    return sid


# (method, path template, body, prepare, expected status per role in ROLES order)
READ = (401, 200, 200, 403, 200)
API_MATRIX: list[tuple[str, str, Any, Prepare | None, tuple[int, ...]]] = [
    ("GET", "/api/health", None, None, (200, 200, 200, 200, 200)),
    ("GET", "/api/samples", None, None, READ),
    ("GET", "/api/samples/{sid}", None, _captured, READ),
    ("GET", "/api/proposals", None, None, READ),
    ("GET", "/api/export", None, None, READ),
    ("GET", "/api/users", None, None, (401, 403, 403, 200, 403)),
    ("POST", "/api/users", {"username": "new-{role}", "roles": ["labeller"]}, None,
     (401, 403, 403, 201, 403)),
    ("POST", "/api/samples/{sid}/label", LABEL, _captured, (401, 200, 200, 403, 403)),
    ("POST", "/api/samples/{sid}/approve", {"from_status": "problem"}, _labelled,
     (401, 403, 200, 403, 403)),
    ("POST", "/api/samples/{sid}/propose",
     {"to_status": "candidate_baseline", "rule": "r"}, _labelled, (401, 403, 403, 403, 200)),
    ("POST", "/api/samples/{sid}/reject", {"reason": "one-off"}, _proposed,
     (401, 403, 200, 403, 403)),
    ("POST", "/api/samples/{sid}/demote", {"from_status": "candidate_baseline", "reason": "stale"},
     _baseline,
     (401, 403, 200, 403, 403)),
]  # fmt: skip

PAGE_MATRIX: list[tuple[str, Prepare | None, tuple[int, ...]]] = [
    ("/queue", None, (303, 200, 200, 403, 200)),
    ("/proposals", None, (303, 200, 200, 403, 200)),
    ("/samples/{sid}", _captured, (303, 200, 200, 403, 200)),
    ("/samples/{sid}/audit", _captured, (303, 200, 200, 403, 200)),
    ("/admin", None, (303, 403, 403, 200, 403)),
    ("/dashboards", None, (303, 200, 200, 200, 403)),
    ("/dashboards/rates", None, (303, 200, 200, 200, 403)),
    ("/dashboards/comparison", None, (303, 200, 200, 200, 403)),
]


def _headers(console: Console, role: str) -> dict[str, str]:
    return console.bearer(USER_OF[role]) if role != "anonymous" else {}


@pytest.mark.parametrize(
    ("method", "path", "body", "prepare", "expected"),
    API_MATRIX,
    ids=[f"{m} {p}" for m, p, *_ in API_MATRIX],
)
def test_api_endpoint_by_role(
    console: Console,
    method: str,
    path: str,
    body: Any,
    prepare: Prepare | None,
    expected: tuple[int, ...],
) -> None:
    got = {}
    for role in ROLES:
        sid = prepare(console) if prepare else console.sample_id
        payload = (
            {k: v.format(role=role) if isinstance(v, str) else v for k, v in body.items()}
            if isinstance(body, dict)
            else body
        )
        response = console.client.request(
            method, path.format(sid=sid), json=payload, headers=_headers(console, role)
        )
        got[role] = response.status_code
        if response.status_code in (401, 403):
            assert response.json()["detail"], response.text
        if role == "anonymous" and response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert got == dict(zip(ROLES, expected, strict=True))


@pytest.mark.parametrize(
    ("path", "prepare", "expected"), PAGE_MATRIX, ids=[p for p, *_ in PAGE_MATRIX]
)
def test_page_by_role(
    console: Console, path: str, prepare: Prepare | None, expected: tuple[int, ...]
) -> None:
    sid = prepare(console) if prepare else console.sample_id
    got = {}
    for role in ROLES:
        console.client.cookies.clear()
        if role != "anonymous":
            console.login(USER_OF[role])
        response = console.client.get(path.format(sid=sid), follow_redirects=False)
        got[role] = response.status_code
        if role == "anonymous":
            assert response.headers["location"].startswith("/login")
    assert got == dict(zip(ROLES, expected, strict=True))
    record("security: role matrix", pages_checked=len(PAGE_MATRIX), roles=len(ROLES),
           api_endpoints_checked=len(API_MATRIX))  # fmt: skip


def test_bad_bearer_keys_are_401_not_500(console: Console) -> None:
    headers = ("", "Bearer", "Bearer ", "Basic abc", "Bearer ' OR 1=1 --",
               "Bearer " + "k" * 10_000, "bearer \x00")  # fmt: skip
    for header in headers:
        response = console.client.get("/api/samples", headers={"Authorization": header})
        assert response.status_code == 401, (header[:20], response.status_code)


def test_forged_or_tampered_session_cookie_is_refused(console: Console) -> None:
    console.login("lena")
    cookie_name = next(iter(console.client.cookies.keys()))
    value = console.client.cookies[cookie_name]
    payload, _, signature = value.partition(".")
    for forged in (f"{payload}.{'0' * len(signature)}", f"{payload}x.{signature}", "garbage", "."):
        console.client.cookies.clear()
        console.client.cookies.set(cookie_name, forged)
        response = console.client.get("/queue", follow_redirects=False)
        assert response.status_code == 303, forged


# ------------------------------------------------------------------ SQL injection

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE samples; --",
    "\\' OR 1=1 --",
    "x') UNION SELECT * FROM console_users --",
    "%' OR 1=1 OR '%'='",
    "{sid:String}",
    "1; SELECT sleep(3)",
    "\u0000",
    "captured' /*",
    "\\",
]
FILTERS = ["status", "problem_type", "detector", "risk_level", "model_version", "search"]
NUMERIC = ["risk_min", "risk_max", "limit", "offset"]


def _row_counts(console: Console) -> dict[str, int]:
    counts = console.warehouse.table_counts()
    for table in ("console_users", "sample_labels"):
        sql = f"SELECT count() FROM {table}"  # noqa: S608 - fixed table names
        counts[table] = int(console.warehouse.query(sql).result_rows[0][0])
    return counts


def test_sql_injection_in_every_filter_changes_nothing(console: Console) -> None:
    for i in range(3):
        seed_sample(console.warehouse, f"inj{i}")
    before = _row_counts(console)
    headers = console.bearer("lena")
    baseline = console.client.get("/api/samples", headers=headers).json()
    attempts = 0
    for name, attack in itertools.product(FILTERS, INJECTIONS):
        response = console.client.get("/api/samples", params={name: attack}, headers=headers)
        attempts += 1
        assert response.status_code in (200, 422), (name, attack, response.text)
        if response.status_code == 200:
            total = response.json().get("total")
            assert total is None or total <= baseline.get("total", total), (name, attack)
        export = console.client.get("/api/export", params={name: attack}, headers=headers)
        if name in ("status", "problem_type"):
            attempts += 1
            assert export.status_code in (200, 422), (name, attack, export.text)
    for name, attack in itertools.product(NUMERIC, INJECTIONS[:4]):
        response = console.client.get("/api/samples", params={name: attack}, headers=headers)
        attempts += 1
        assert response.status_code == 422, (name, attack)
    for attack in INJECTIONS:
        attempts += 1
        got = console.client.get(f"/api/samples/{quote(attack, safe='')}", headers=headers)
        assert got.status_code in (404, 422), (attack, got.status_code)
        page = console.client.get("/queue", params={"search": attack, "status": attack})
        assert page.status_code in (200, 303, 422), attack
    assert _row_counts(console) == before
    assert console.client.get("/api/samples", headers=headers).json() == baseline
    record("security: SQL injection", attempts=attempts, rows_changed=0, server_errors=0)


def test_sql_injection_in_usernames_is_stored_as_data(console: Console) -> None:
    before = _row_counts(console)
    made = console.client.post(
        "/api/users",
        json={"username": "x'); DROP TABLE samples; --", "roles": ["labeller"]},
        headers=console.bearer("admin"),
    )
    assert made.status_code in (201, 422), made.text
    after = _row_counts(console)
    assert after["samples"] == before["samples"]


# ------------------------------------------------------------------ cookies and headers


def test_session_and_login_cookies_are_httponly_and_samesite(console: Console) -> None:
    page = console.client.get("/login")
    login_cookie = page.headers["set-cookie"].lower()
    assert "httponly" in login_cookie
    assert "samesite=strict" in login_cookie
    token = console.csrf("/login")
    response = console.client.post(
        "/login",
        data={"username": "lena", "api_key": console.keys["lena"], "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    # The login CSRF cookie is deleted here (max-age=0); the session cookie is the live one.
    session = [
        c
        for c in response.headers.get_list("set-cookie")
        if "max-age" in c.lower() and "max-age=0" not in c.lower()
    ]
    assert session, response.headers.get_list("set-cookie")
    for cookie in session:
        lowered = cookie.lower()
        assert "httponly" in lowered
        assert "samesite=strict" in lowered
    for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
        assert header in response.headers


# ------------------------------------------------------------------ PII


def test_exports_mask_pii_unless_the_caller_may_see_it(console: Console) -> None:
    masked = console.client.get("/api/export", headers=console.bearer("lena"))
    assert masked.status_code == 200
    assert masked.text.strip()
    assert PII_PHONE not in masked.text
    assert PII_EMAIL not in masked.text
    assert "[PHONE]" in masked.text
    revealed = console.client.get("/api/export", headers=console.bearer("ari"))
    assert PII_PHONE in revealed.text
    records = pool.export_samples(console.warehouse, SampleFilter(limit=100), reveal_pii=False)
    flat = repr(records)
    assert records
    assert PII_PHONE not in flat
    assert PII_EMAIL not in flat
    sample = console.client.get(
        f"/api/samples/{console.sample_id}", headers=console.bearer("lena")
    ).text
    assert PII_PHONE not in sample
    assert PII_EMAIL not in sample
    record("security: PII masking", exports_checked=2, leaks=0)


PHONE_ALPHABET = "0123456789"
EMAIL_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._@-"


def _search_hits(console: Console, user: str, text: str) -> bool:
    found = console.client.get(
        "/api/samples", params={"search": text, "limit": 500}, headers=console.bearer(user)
    )
    assert found.status_code == 200, found.text
    total: int = found.json()["total"]
    return total > 0


def _extend(console: Console, user: str, known: str, alphabet: str) -> tuple[str, int]:
    """The probing attack of issue 16 item 10: grow ``known`` one character at a time while
    some extension still finds a sample; returns what was recovered and the queries made."""
    recovered, queries = "", 0
    while True:
        for ch in alphabet:
            queries += 1
            if _search_hits(console, user, known + recovered + ch):
                recovered += ch
                break
        else:
            return recovered, queries


def test_search_probes_recover_no_masked_pii(console: Console) -> None:
    """A labeller without PII probing substrings of the transcript recovers nothing; the same
    attack with the PII permission recovers both (so the attack itself works)."""
    context = "call me at "  # visible around the mask: "call me at [PHONE] or [EMAIL]"
    phone, phone_queries = _extend(console, "ari", context, PHONE_ALPHABET)
    email, email_queries = _extend(console, "ari", f"{context}{phone} or ", EMAIL_ALPHABET)
    assert (phone, email) == (PII_PHONE, PII_EMAIL)
    masked_phone, masked_phone_queries = _extend(console, "lena", context, PHONE_ALPHABET)
    masked_email, masked_email_queries = _extend(console, "lena", "[PHONE] or ", EMAIL_ALPHABET)
    assert (masked_phone, masked_email) == ("", "")
    assert not _search_hits(console, "lena", PII_PHONE[3:8])
    assert not _search_hits(console, "lena", "li.wei")
    assert _search_hits(console, "lena", "[PHONE] or [EMAIL]")
    assert _search_hits(console, "lena", "refund")
    record(
        "security: masked search",
        queries_to_recover_phone_with_pii=phone_queries,
        queries_to_recover_email_with_pii=email_queries,
        probes_without_pii=masked_phone_queries + masked_email_queries,
        pii_chars_recovered_without_pii=len(masked_phone) + len(masked_email),
    )


PII_TEXTS = [
    f"call me at {PII_PHONE}",
    f"mail {PII_EMAIL} please",
    "我的手机是 138 1234 5678",
    "card 4111 1111 1111 1111",
    "身份证 11010519491231002X",
]


def test_training_dataset_rows_carry_no_pii() -> None:
    pool_samples = make_pool(baselines=6, problems=4)
    with_pii = []
    for i, sample in enumerate(pool_samples):
        secret = PII_TEXTS[i % len(PII_TEXTS)]
        messages = [ChatMessage(role=m.role, content=f"{m.content} {secret}")
                    for m in sample.messages]  # fmt: skip
        with_pii.append(sample.model_copy(update={"messages": messages}))
    built = build_dataset(with_pii, config=DatasetConfig(), mask=mask_pii)
    text = repr(built.rows)
    for secret in (PII_PHONE, PII_EMAIL, "138 1234 5678", "4111 1111 1111 1111",
                   "11010519491231002X"):  # fmt: skip
        assert secret not in text, secret
    assert "[PHONE]" in text
    assert "[EMAIL]" in text


# ------------------------------------------------------------------ abuse (issue 16 #11-14, #17)


FORGED_COOKIE = "loraloop_session=eyJ1IjoxfQ.\u00e9".encode("latin-1")
ABUSE_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    # (method, path, httpx keyword arguments): unauthenticated unless a key is given
    ("POST", "/login", {"data": {"username": "lena", "api_key": "x", "csrf_token": "ä" * 40}}),
    ("GET", "/queue", {"headers": {b"Cookie": FORGED_COOKIE}}),
    ("POST", "/api/samples/smp-c1/label", {"content": b"x" * (2 * 1024 * 1024)}),
    ("POST", "/api/samples/smp-c1/label", {"content": b'{"notes": NaN}',
                                           "headers": {"Content-Type": "application/json"}}),
    ("POST", "/api/users", {"json": {"username": "\u0430dmin", "roles": ["admin"]}}),
]  # fmt: skip


def test_abuse_answers_4xx_never_500(console: Console) -> None:
    statuses = []
    for method, path, kwargs in ABUSE_REQUESTS:
        response = console.client.request(method, path, follow_redirects=False, **kwargs)
        statuses.append(response.status_code)
        assert 300 <= response.status_code < 500, (path, response.status_code, response.text)
    keyed = [
        console.client.get("/api/samples?offset=abc", headers=console.bearer("lena")),
        console.client.get("/api/samples?risk_min=abc", headers=console.bearer("lena")),
        console.client.post(
            "/api/samples/smp-c1/label", content=b'{"notes": Infinity}',
            headers={**console.bearer("lena"), "Content-Type": "application/json"},
        ),
        console.client.post(
            "/api/samples/smp-c1/label", content=b"x" * (2 * 1024 * 1024),
            headers={**console.bearer("lena"), "Content-Type": "application/json"},
        ),
        console.client.post(
            "/api/users", json={"username": "sampler", "roles": ["labeller"]},
            headers=console.bearer("admin"),
        ),
    ]  # fmt: skip
    statuses += [r.status_code for r in keyed]
    assert all(400 <= r.status_code < 500 for r in keyed), [r.text for r in keyed]
    console.login("lena")
    for path in ("/queue?offset=abc", "/queue?risk_min=abc", "/samples/smp-c1?turns=abc"):
        response = console.client.get(path)
        statuses.append(response.status_code)
        assert response.status_code == 422, path
    record(
        "security: abuse", requests=len(statuses), server_errors=0,
        statuses=sorted(set(statuses)),
    )  # fmt: skip


def test_logout_revokes_and_the_last_admin_stays(console: Console) -> None:
    console.login("admin")
    token = console.csrf("/admin")
    disabled = console.client.post(
        "/admin/users/admin", data={"action": "disable", "csrf_token": token}
    )
    assert disabled.status_code == 409
    cookie = console.client.cookies.get("loraloop_session")
    assert cookie is not None
    console.client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    console.client.cookies.set("loraloop_session", cookie)
    after = console.client.get("/admin", follow_redirects=False)
    assert after.status_code == 303
    record("security: sessions and admins", revoked_after_logout=1, last_admin_kept=1)
