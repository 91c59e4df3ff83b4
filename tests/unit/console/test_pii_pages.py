"""Personal data is masked in pages and exports for users without the PII permission."""

from __future__ import annotations

import orjson

from tests.pool_seed import PII_EMAIL, PII_PHONE
from tests.unit.console.conftest import Console


def test_sample_page_masked_without_permission(console: Console) -> None:
    console.login("lena")
    page = console.client.get(f"/samples/{console.sample_id}")
    assert page.status_code == 200
    assert PII_PHONE not in page.text
    assert PII_EMAIL not in page.text
    assert "[PHONE]" in page.text
    assert "PII masked" in page.text


def test_sample_page_clear_with_permission(console: Console) -> None:
    console.login("ari")
    page = console.client.get(f"/samples/{console.sample_id}")
    assert PII_PHONE in page.text


def test_api_and_export_masked(console: Console) -> None:
    lena, ari = console.bearer("lena"), console.bearer("ari")
    detail = console.client.get(f"/api/samples/{console.sample_id}", headers=lena).json()
    assert PII_PHONE not in orjson.dumps(detail).decode()
    assert detail["masked_pii"] is True
    export = console.client.get("/api/export", headers=lena)
    lines = [orjson.loads(x) for x in export.text.splitlines()]
    assert lines[0]["messages"][0]["content"].count("[PHONE]") == 1
    assert PII_PHONE in console.client.get("/api/export", headers=ari).text


def test_text_is_escaped(console: Console) -> None:
    label = {
        "acceptance": "Risk",
        "problem_types": ["over_promise"],
        "risk_level": "low",
        "corrected_response": "<script>alert(1)</script>",
    }
    console.client.post(
        f"/api/samples/{console.sample_id}/label", json=label, headers=console.bearer("lena")
    )
    console.login("lena")
    page = console.client.get(f"/samples/{console.sample_id}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text


def test_prefill_and_queue_pages(console: Console) -> None:
    console.login("lena")
    page = console.client.get(f"/samples/{console.sample_id}")
    assert "escalated it to the courier" in page.text
    assert "Pre-filled" in page.text
    queue = console.client.get("/queue?status=captured&search=refund")
    assert console.sample_id in queue.text
    assert console.client.get("/proposals").status_code == 200
    assert console.client.get(f"/samples/{console.sample_id}/audit").status_code == 200
