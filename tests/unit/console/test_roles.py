"""Roles are enforced on the server for every action, API and pages alike."""

from __future__ import annotations

from tests.unit.console.conftest import Console

LABEL = {
    "acceptance": "Reject",
    "problem_types": ["over_promise"],
    "risk_level": "high",
    "corrected_response": "I cannot promise a delivery date.",
}
APPROVE = {"from_status": "problem"}
DEMOTE = {"from_status": "candidate_baseline"}


def test_labeller_labels_but_cannot_approve(console: Console) -> None:
    sid, lena = console.sample_id, console.bearer("lena")
    moved = console.client.post(f"/api/samples/{sid}/label", json=LABEL, headers=lena)
    assert moved.status_code == 200, moved.text
    assert moved.json()["to_status"] == "problem"
    refused = console.client.post(f"/api/samples/{sid}/approve", json=APPROVE, headers=lena)
    assert refused.status_code == 403
    assert "approver" in refused.json()["detail"]
    approved = console.client.post(
        f"/api/samples/{sid}/approve", json=APPROVE, headers=console.bearer("ari")
    )
    assert approved.json()["to_status"] == "candidate_baseline"


def test_admin_cannot_touch_samples(console: Console) -> None:
    admin = console.bearer("admin")
    assert console.client.get("/api/samples", headers=admin).status_code == 403
    refused = console.client.post(
        f"/api/samples/{console.sample_id}/label", json=LABEL, headers=admin
    )
    assert refused.status_code == 403


def test_only_admin_manages_users(console: Console) -> None:
    body = {"username": "eve", "roles": ["approver"]}
    made = console.client.post("/api/users", json=body, headers=console.bearer("ari"))
    assert made.status_code == 403
    mixed = {"username": "bot", "roles": ["system", "approver"]}
    refused = console.client.post("/api/users", json=mixed, headers=console.bearer("admin"))
    assert refused.status_code == 422


def test_only_system_proposes(console: Console) -> None:
    sid = console.sample_id
    console.client.post(f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena"))
    body = {"to_status": "candidate_baseline", "rule": "solved_after_training"}
    assert (
        console.client.post(
            f"/api/samples/{sid}/propose", json=body, headers=console.bearer("ari")
        ).status_code
        == 403
    )
    made = console.client.post(
        f"/api/samples/{sid}/propose", json=body, headers=console.bearer("trainer")
    )
    assert made.status_code == 200, made.text
    queue = console.client.get("/api/proposals", headers=console.bearer("lena")).json()
    assert [p["rule"] for p in queue] == ["solved_after_training"]
    declined = console.client.post(
        f"/api/samples/{sid}/reject", json={"reason": "one-off"}, headers=console.bearer("lena")
    )
    assert declined.status_code == 403
    declined = console.client.post(
        f"/api/samples/{sid}/reject", json={"reason": "one-off"}, headers=console.bearer("ari")
    )
    assert declined.json()["declined"] == 1


def test_system_cannot_promote(console: Console) -> None:
    sid = console.sample_id
    console.client.post(f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena"))
    refused = console.client.post(
        f"/api/samples/{sid}/approve", json=APPROVE, headers=console.bearer("trainer")
    )
    assert refused.status_code == 403


def test_demote_needs_reason_and_state(console: Console) -> None:
    sid, ari = console.sample_id, console.bearer("ari")
    conflict = console.client.post(
        f"/api/samples/{sid}/demote", json={"from_status": "captured", "reason": "x"}, headers=ari
    )
    assert conflict.status_code == 409
    console.client.post(f"/api/samples/{sid}/label", json=LABEL, headers=console.bearer("lena"))
    console.client.post(f"/api/samples/{sid}/approve", json=APPROVE, headers=ari)
    missing = console.client.post(f"/api/samples/{sid}/demote", json=DEMOTE, headers=ari)
    assert missing.status_code == 422
    done = console.client.post(
        f"/api/samples/{sid}/demote", json={**DEMOTE, "reason": "policy"}, headers=ari
    )
    assert done.json()["to_status"] == "demoted"


def test_invalid_label_is_422(console: Console) -> None:
    bad = {**LABEL, "problem_types": ["not_a_type"]}
    response = console.client.post(
        f"/api/samples/{console.sample_id}/label", json=bad, headers=console.bearer("lena")
    )
    assert response.status_code == 422
    assert "not_a_type" in response.json()["detail"]


def test_admin_page_forbidden_for_labeller(console: Console) -> None:
    console.login("lena")
    response = console.client.get("/admin")
    assert response.status_code == 403
    assert "needs admin" in response.text


def test_the_brand_link_takes_each_role_to_a_page_it_may_open(console: Console) -> None:
    assert 'class="brand" href="/"' in console.login("admin").get("/admin").text
    admin_start = console.client.get("/", follow_redirects=False)
    assert admin_start.status_code == 303
    assert admin_start.headers["location"] == "/admin"  # /queue would be a 403 for an admin
    assert console.client.get("/", follow_redirects=True).status_code == 200
    console.login("lena")
    assert console.client.get("/", follow_redirects=False).headers["location"] == "/queue"
