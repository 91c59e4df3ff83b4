"""Issue 16, items 7-9: the lifecycle refuses empty, forged and stale moves through the console."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics import pool
from loraloop.cli.samples import samples_app
from loraloop.lifecycle import Role
from tests.unit.console.conftest import Console, cli_as

LABEL = {
    "acceptance": "Reject",
    "problem_types": ["over_promise"],
    "risk_level": "high",
    "corrected_response": "I cannot promise a delivery date.",
}


def _status(console: Console) -> str:
    return pool.get_sample(console.warehouse, console.sample_id).summary.status


def _count(console: Console, table: str) -> int:
    rows = console.warehouse.query(
        f"SELECT count() FROM {table} WHERE sample_id = {{sid:String}}",  # noqa: S608
        {"sid": console.sample_id},
    ).result_rows
    return int(rows[0][0])


def _labelled(console: Console) -> str:
    sid = console.sample_id
    done = console.client.post(
        f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena")
    )
    assert done.status_code == 200, done.text
    return sid


# ---------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("target", ["problem", "rejected"])
def test_a_labelling_move_without_a_label_is_refused(console: Console, target: str) -> None:
    sid = console.sample_id
    for user in ("lena", "ari"):
        response = console.client.post(
            f"/api/samples/{sid}/transition",
            json={"to_status": target, "from_status": "captured"},
            headers=console.bearer(user),
        )
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "labelling" in detail
        assert "/label" in detail
    assert _status(console) == "captured"
    assert _count(console, "sample_transitions") == 0
    assert _count(console, "sample_labels") == 0


def test_caller_evidence_is_refused(console: Console) -> None:
    sid = _labelled(console)
    forged = {"proposal_id": "smp-x:9", "solved_version": "model_v9"}
    response = console.client.post(
        f"/api/samples/{sid}/transition",
        json={
            "to_status": "candidate_baseline", "from_status": "problem", "reason": "looks good",
            "evidence": forged,
        },
        headers=console.bearer("ari"),
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert "evidence" in response.json()["detail"]
    assert _status(console) == "problem"
    moved = console.client.post(
        f"/api/samples/{sid}/transition",
        json={"to_status": "candidate_baseline", "from_status": "problem", "reason": "ok"},
        headers=console.bearer("ari"),
    )
    assert moved.status_code == 200, moved.text
    # only what the server builds: the label revision and transcript snapshot it promotes
    assert set(moved.json()["evidence"]) == {"label_revision", "transcript_sha256"}


def test_reopening_a_false_alarm_needs_a_problem_label(console: Console) -> None:
    sid = console.sample_id
    accept = {"acceptance": "Accept", "risk_level": "low"}
    done = console.client.post(
        f"/api/samples/{sid}/label", json=accept, headers=console.bearer("lena")
    )
    assert done.json()["to_status"] == "rejected"
    ari = console.bearer("ari")
    reopen = {"to_status": "problem", "from_status": "rejected", "reason": "second look"}
    refused = console.client.post(f"/api/samples/{sid}/transition", json=reopen, headers=ari)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "problem types" in detail
    assert "corrected response" in detail
    assert _status(console) == "rejected"
    relabel = {**LABEL, "reason": "second look: it did over-promise"}
    reopened = console.client.post(f"/api/samples/{sid}/label", json=relabel, headers=ari)
    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["action"], reopened.json()["to_status"]) == ("reopen", "problem")
    label = pool.get_sample(console.warehouse, sid).label
    assert label is not None
    assert label.problem_types == ("over_promise",)


# ---------------------------------------------------------------------------- item 8


def test_double_click_approve_moves_one_tier(console: Console) -> None:
    sid, ari = _labelled(console), console.bearer("ari")
    first = console.client.post(
        f"/api/samples/{sid}/approve", json={"from_status": "problem"}, headers=ari
    )
    assert first.status_code == 200, first.text
    assert first.json()["to_status"] == "candidate_baseline"
    for _ in range(2):
        again = console.client.post(
            f"/api/samples/{sid}/approve", json={"from_status": "problem"}, headers=ari
        )
        assert again.status_code == 409, again.text
        assert "candidate_baseline now, not problem" in again.json()["detail"]
    assert _status(console) == "candidate_baseline"


def test_a_move_without_from_status_is_refused(console: Console) -> None:
    sid, ari = _labelled(console), console.bearer("ari")
    for path, body in (
        ("approve", {}),
        ("transition", {"to_status": "downweighted", "reason": "unsolved"}),
        ("demote", {"reason": "policy"}),
    ):
        response = console.client.post(f"/api/samples/{sid}/{path}", json=body, headers=ari)
        assert response.status_code == 422, (path, response.text)
        assert "from_status" in response.text
    assert _status(console) == "problem"


def test_racing_approvers_get_one_200_and_one_409(console: Console) -> None:
    sid = _labelled(console)
    made = console.client.post(
        "/api/users",
        json={"username": "bea", "roles": ["approver"]},
        headers=console.bearer("admin"),
    )
    assert made.status_code == 201, made.text
    headers = [console.bearer("ari"), {"Authorization": f"Bearer {made.json()['api_key']}"}]

    def approve(h: dict[str, str]) -> int:
        body = {"from_status": "problem"}
        return console.client.post(f"/api/samples/{sid}/approve", json=body, headers=h).status_code

    with ThreadPoolExecutor(max_workers=2) as threads:
        codes = sorted(threads.map(approve, headers))
    assert codes == [200, 409]
    assert _status(console) == "candidate_baseline"


def test_stale_page_form_is_409(console: Console) -> None:
    sid = _labelled(console)
    client = console.login("ari")
    page = client.get(f"/samples/{sid}")
    assert 'name="from_status" value="problem"' in page.text
    form = {"csrf_token": console.csrf(f"/samples/{sid}"), "from_status": "problem"}
    first = client.post(f"/samples/{sid}/approve", data=form, follow_redirects=False)
    assert first.status_code == 303, first.text
    second = client.post(f"/samples/{sid}/approve", data=form, follow_redirects=False)
    assert second.status_code == 409, second.text
    assert _status(console) == "candidate_baseline"


@pytest.fixture
def cli(console: Console, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return cli_as(console, monkeypatch, "ari")


def test_cli_approve_names_the_status_it_expects(cli: CliRunner, console: Console) -> None:
    sid = _labelled(console)
    args = ["approve", sid, "--from", "problem", "--url", "http://testserver"]
    first = cli.invoke(samples_app, args)
    assert first.exit_code == 0, first.output
    assert "candidate_baseline" in first.output
    second = cli.invoke(samples_app, args)
    assert second.exit_code == 1
    assert "409" in second.output
    demoted = cli.invoke(
        samples_app,
        ["demote", sid, "--from", "candidate_baseline", "--reason", "policy", "--url",
         "http://testserver"],
    )  # fmt: skip
    assert demoted.exit_code == 0, demoted.output
    assert _status(console) == "demoted"


# ---------------------------------------------------------------------------- item 9


def test_a_refused_label_move_writes_no_label(console: Console) -> None:
    long_name = "n" * 200
    with pytest.raises(pool.InvalidAction, match="actor"):
        pool.label(
            console.warehouse, console.sample_id, LABEL, actor=long_name,
            roles=[Role.LABELLER], taxonomy=["over_promise"],
        )  # fmt: skip
    assert _count(console, "sample_labels") == 0
    assert _count(console, "sample_transitions") == 0
    assert _status(console) == "captured"


def test_deep_evidence_is_refused_before_anything_is_written(console: Console) -> None:
    sid = _labelled(console)
    before = _count(console, "sample_transitions")
    deep: dict[str, Any] = {}
    for _ in range(300):
        deep = {"d": deep}
    response = console.client.post(
        f"/api/samples/{sid}/propose",
        json={"to_status": "candidate_baseline", "rule": "r", "evidence": deep},
        headers=console.bearer("trainer"),
    )
    assert response.status_code == 422, response.text
    assert "evidence" in response.json()["detail"]
    assert _count(console, "sample_transitions") == before
