"""Issue 18, console forms: a refused label stays on its form with what was typed, labels
are frozen to the transcript the form showed, the approve button names its tier and the
move menu offers only what the lifecycle allows."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from analytics import pool
from analytics.console.moves import approve_label, menu_moves, promotion
from analytics.console.pages import field_errors
from analytics.rows import COLUMNS
from loraloop.lifecycle import Action, Role, SampleStatus
from tests.pool_seed import T0
from tests.unit.console.conftest import Console

HASH_RE = re.compile(r'name="transcript_sha256" value="([^"]*)"')
LABEL = {
    "acceptance": "Reject",
    "problem_types": ["over_promise"],
    "risk_level": "high",
    "corrected_response": "I cannot promise a delivery date.",
}
TYPED_NOTE = "promised a date <again> & again"


def _page(console: Console) -> str:
    page = console.client.get(f"/samples/{console.sample_id}")
    assert page.status_code == 200, page.text
    return page.text


def _form(console: Console, **fields: str | list[str]) -> dict[str, str | list[str]]:
    """The label form as the sample page renders it (CSRF token and snapshot hash)."""
    text = _page(console)
    shown = HASH_RE.search(text)
    assert shown is not None, "the label form carries no transcript_sha256"
    token = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert token is not None
    form: dict[str, str | list[str]] = {"csrf_token": token[1], "transcript_sha256": shown[1]}
    form.update(fields)
    return form


def _labels(console: Console) -> int:
    rows = console.warehouse.query(
        "SELECT count() FROM sample_labels WHERE sample_id = {sid:String}",
        {"sid": console.sample_id},
    ).result_rows
    return int(rows[0][0])


def _status(console: Console) -> str:
    return pool.get_sample(console.warehouse, console.sample_id).summary.status


def _add_turn(console: Console) -> None:
    """The conversation gets a turn after the form was opened (a late event)."""
    row = [
        "c1-late", T0 + timedelta(minutes=5), "c1", "u1", 9, "user", "Hello? Anyone there?",
        "", False,
    ]  # fmt: skip
    console.warehouse.insert("turns", [row], column_names=COLUMNS["turns"])


def _textarea(text: str, name: str) -> str:
    found = re.search(rf'<textarea name="{name}"[^>]*>(.*?)</textarea>', text, re.S)
    assert found is not None, name
    return html.unescape(found[1])


# ---------------------------------------------------------------------------- refused labels


@pytest.mark.parametrize("user", ["lena", "ari"])
def test_a_label_without_its_corrected_response_stays_on_the_form(
    console: Console, user: str
) -> None:
    console.login(user)
    form = _form(
        console, acceptance="Reject", problem_types=["over_promise", "missing_knowledge"],
        risk_level="high", corrected_response="   ", notes=TYPED_NOTE,
    )  # fmt: skip
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=form, follow_redirects=False
    )
    assert response.status_code == 422
    text = response.text
    assert 'id="label-form"' in text  # the form, not the error page
    assert 'id="error-detail"' not in text
    error = re.search(r'id="error-corrected_response">(.*?)</p>', text, re.S)
    assert error is not None
    assert "corrected_response" in error[1]
    assert 'aria-invalid="true" aria-describedby="error-corrected_response"' in text
    summary = re.search(r'id="label-error"[^>]*>(.*?)</p>', text, re.S)
    assert summary is not None
    assert "Not saved: Reject needs a corrected_response" in summary[1]
    assert 'id="reload"' not in summary[1]  # reloading would lose what was typed
    # everything typed is kept
    assert _textarea(text, "notes") == TYPED_NOTE
    assert re.search(r'id="acceptance-Reject" checked', text)
    assert re.search(r'id="pt-over_promise" checked', text)
    assert re.search(r'id="pt-missing_knowledge" checked', text)
    assert not re.search(r'id="pt-wrong_CTA_timing" checked', text)
    assert '<option value="high" selected>' in text
    assert _labels(console) == 0
    assert _status(console) == "captured"


def test_a_label_without_a_problem_type_names_that_field(console: Console) -> None:
    console.login("lena")
    form = _form(
        console, acceptance="Risk", risk_level="low", corrected_response="Better reply", notes=""
    )
    response = console.client.post(f"/samples/{console.sample_id}/label", data=form)
    assert response.status_code == 422
    assert 'id="error-problem_types"' in response.text
    assert 'id="error-corrected_response"' not in response.text
    assert _textarea(response.text, "corrected_response") == "Better reply"


def test_a_complete_label_still_saves(console: Console) -> None:
    console.login("lena")
    form = _form(console, **LABEL)
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=form, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert _status(console) == "problem"


def test_refusals_are_put_next_to_the_fields_they_name() -> None:
    assert field_errors(
        "invalid label: label: Value error, Reject needs a corrected_response (the training target)"
    ) == {"corrected_response": "Reject needs a corrected_response (the training target)"}
    both = field_errors(
        "invalid label: risk_level: Input should be 'low', 'medium' or 'high'; "
        "acceptance: Input should be 'Accept', 'Risk' or 'Reject'"
    )
    assert set(both) == {"risk_level", "acceptance"}
    assert both["risk_level"].startswith("Input should be")
    assert field_errors("smp-c1 is problem now, not captured") == {}


# ---------------------------------------------------------------------------- frozen snapshot


@pytest.mark.parametrize("user", ["lena", "ari"])  # keyed hash (no PII) and raw hash
def test_a_form_opened_before_the_conversation_changed_is_refused(
    console: Console, user: str
) -> None:
    console.login(user)
    form = _form(console, **LABEL, notes=TYPED_NOTE)
    _add_turn(console)
    response = console.client.post(f"/samples/{console.sample_id}/label", data=form)
    assert response.status_code == 409
    error = re.search(r'id="label-error"[^>]*>(.*?)</p>', response.text, re.S)
    assert error is not None
    assert "the conversation changed since you opened it; reload" in error[1]
    assert 'id="reload"' in error[1]
    assert _textarea(response.text, "notes") == TYPED_NOTE
    assert _labels(console) == 0
    # the form keeps the snapshot it was opened on: submitting it again is refused again
    again = HASH_RE.search(response.text)
    assert again is not None
    assert again[1] == form["transcript_sha256"]
    # reloaded, it labels what the conversation says now
    fresh = _form(console, **LABEL)
    assert fresh["transcript_sha256"] != form["transcript_sha256"]
    saved = console.client.post(
        f"/samples/{console.sample_id}/label", data=fresh, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    assert _status(console) == "problem"


def test_a_form_without_the_hash_is_not_checked(console: Console) -> None:
    console.login("lena")
    form = _form(console, **LABEL)
    del form["transcript_sha256"]
    _add_turn(console)
    response = console.client.post(
        f"/samples/{console.sample_id}/label", data=form, follow_redirects=False
    )
    assert response.status_code == 303


@pytest.mark.parametrize("user", ["lena", "ari"])
def test_api_clients_may_send_the_hash(console: Console, user: str) -> None:
    sid = console.sample_id
    read = console.client.get(f"/api/samples/{sid}", headers=console.bearer(user))
    shown = read.json()["transcript_sha256"]
    assert shown
    _add_turn(console)
    stale = console.client.post(
        f"/api/samples/{sid}/label", json={**LABEL, "transcript_sha256": shown},
        headers=console.bearer(user),
    )  # fmt: skip
    assert stale.status_code == 409, stale.text
    assert stale.json()["error"] == "TranscriptChanged"
    assert _labels(console) == 0
    now = console.client.get(f"/api/samples/{sid}", headers=console.bearer(user))
    done = console.client.post(
        f"/api/samples/{sid}/label",
        json={**LABEL, "transcript_sha256": now.json()["transcript_sha256"]},
        headers=console.bearer(user),
    )
    assert done.status_code == 200, done.text


def test_api_clients_need_not_send_the_hash(console: Console) -> None:
    sid = console.sample_id
    _add_turn(console)
    done = console.client.post(
        f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena")
    )
    assert done.status_code == 200, done.text
    wrong = console.client.post(
        f"/api/samples/{sid}/label", json={**LABEL, "transcript_sha256": 7},
        headers=console.bearer("ari"),
    )  # fmt: skip
    assert wrong.status_code == 422


def test_a_reader_without_pii_never_sees_the_unkeyed_hash(console: Console) -> None:
    raw = pool.get_sample(console.warehouse, console.sample_id).transcript_sha256
    console.login("lena")
    form = _form(console, **LABEL)
    assert form["transcript_sha256"] != raw
    _add_turn(console)
    response = console.client.post(f"/samples/{console.sample_id}/label", data=form)
    assert response.status_code == 409
    now = pool.get_sample(console.warehouse, console.sample_id).transcript_sha256
    assert raw[:12] not in response.text
    assert now[:12] not in response.text


# ---------------------------------------------------------------------------- approve and move


def _move(console: Console, target: str, from_status: str) -> None:
    done = console.client.post(
        f"/api/samples/{console.sample_id}/transition",
        json={"to_status": target, "from_status": from_status, "reason": "held up"},
        headers=console.bearer("ari"),
    )
    assert done.status_code == 200, done.text


def _menu(text: str) -> list[str]:
    found = re.search(r'<select name="action" id="move-action">(.*?)</select>', text, re.S)
    return re.findall(r'<option value="(\w+)">', found[1]) if found else []


def test_the_approve_button_names_the_tier_and_the_menu_only_allowed_moves(
    console: Console,
) -> None:
    sid = console.sample_id
    labelled = console.client.post(
        f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena")
    )
    assert labelled.status_code == 200
    console.login("ari")
    text = _page(console)
    assert 'id="approve">Approve promotion to candidate baseline<' in text
    assert _menu(text) == ["downweight"]
    _move(console, "candidate_baseline", "problem")
    text = _page(console)
    assert 'id="approve">Approve promotion to secondary baseline<' in text
    assert _menu(text) == ["demote", "retire"]
    _move(console, "secondary_baseline", "candidate_baseline")
    _move(console, "core_baseline", "secondary_baseline")
    text = _page(console)
    assert 'id="approve"' not in text  # core is the top tier
    assert _menu(text) == ["demote", "retire"]
    _move(console, "retired", "core_baseline")
    text = _page(console)
    assert _menu(text) == []  # retired is final
    assert 'id="move-form"' not in text


def test_a_labeller_is_offered_no_approver_move(console: Console) -> None:
    sid = console.sample_id
    console.client.post(f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena"))
    console.login("lena")
    text = _page(console)
    assert 'id="move-form"' not in text
    assert 'id="approve"' not in text


def test_menu_moves_follow_the_lifecycle() -> None:
    def actions(status: SampleStatus, *roles: Role) -> list[Action]:
        return [e.action for e in menu_moves(status, roles)]

    approver = Role.APPROVER
    assert actions(SampleStatus.CAPTURED, approver) == []  # labelling has its own form
    assert actions(SampleStatus.PROBLEM, approver) == [Action.DOWNWEIGHT]
    assert actions(SampleStatus.PROBLEM, Role.LABELLER) == []
    assert actions(SampleStatus.PROBLEM, Role.SYSTEM) == [Action.DOWNWEIGHT]
    assert actions(SampleStatus.PROBLEM, Role.ADMIN) == []
    assert actions(SampleStatus.SECONDARY_BASELINE, approver) == [Action.DEMOTE, Action.RETIRE]
    for closed in (SampleStatus.REJECTED, SampleStatus.DOWNWEIGHTED, SampleStatus.DEMOTED):
        assert actions(closed, approver) == [Action.REOPEN]
        assert actions(closed, Role.LABELLER, Role.ADMIN) == []
    assert actions(SampleStatus.RETIRED, approver) == []
    assert actions(SampleStatus.CORE_BASELINE, Role.LABELLER, approver) == [
        Action.DEMOTE, Action.RETIRE,
    ]  # fmt: skip


def test_the_promotion_is_named_from_the_lifecycle() -> None:
    up = promotion(SampleStatus.CANDIDATE_BASELINE, (Role.APPROVER,))
    assert up is not None
    assert approve_label(up) == "Approve promotion to secondary baseline"
    assert promotion(SampleStatus.CANDIDATE_BASELINE, (Role.LABELLER, Role.SYSTEM)) is None
    assert promotion(SampleStatus.CORE_BASELINE, (Role.APPROVER,)) is None
    assert promotion(SampleStatus.CAPTURED, (Role.APPROVER,)) is None
