"""The pool over a real embedded warehouse: labelling, moves, proposals, QA verdicts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from analytics import pool
from analytics.pool_models import SampleFilter
from analytics.warehouse import Warehouse
from loraloop.events import QAVerdict
from loraloop.lifecycle import DEFAULT_TAXONOMY, Role, SampleStatus, replay_status
from tests.pool_seed import PII_PHONE, T0, fresh_warehouse, seed_sample

RISK_LABEL = {
    "acceptance": "Risk",
    "problem_types": ["over_promise"],
    "risk_level": "high",
    "corrected_response": f"I cannot promise a date; call {PII_PHONE} for the courier.",
}


def _qa(conversation_id: str, event_id: str = "qa-1", **extra: object) -> QAVerdict:
    data = {
        "event_id": event_id,
        "ts": T0 + timedelta(hours=1),
        "conversation_id": conversation_id,
        "reviewer": "qa-anna",
        "acceptance": "Reject",
        "problem_types": ["over_promise"],
        "risk_level": "medium",
        "corrected_response": "Let me check with the courier first.",
        **extra,
    }
    return QAVerdict.model_validate(data)


def test_label_moves_sample_and_writes_audit(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        row = pool.label(
            wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
        )
        assert row.to_status is SampleStatus.PROBLEM
        detail = pool.get_sample(wh, sid, reveal_pii=True)
        assert detail.summary.status == "problem"
        assert [t.action for t in detail.transitions] == ["capture", "label"]
        assert detail.label is not None
        assert detail.label.labelled_by == "lena"
        assert PII_PHONE not in detail.label.corrected_response  # masked before writing
        assert detail.prefill_corrected_response is not None
        page = pool.list_samples(wh, SampleFilter(status="problem"))
        assert [s.sample_id for s in page.items] == [sid]


def test_replayable_log(tmp_path: Path) -> None:
    from datetime import datetime

    from loraloop.lifecycle import ActorKind, Transition

    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        pool.label(
            wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
        )
        pool.approve(wh, sid, from_status=SampleStatus.PROBLEM, actor="ari", roles=[Role.APPROVER])
        rows = pool.get_sample(wh, sid).transitions
        log = [
            Transition(
                sample_id=r.sample_id, seq=r.seq, from_status=r.from_status or None,
                to_status=r.to_status, action=r.action, actor=r.actor, role=r.role,
                actor_kind=ActorKind(r.actor_kind), ts=r.ts if isinstance(r.ts, datetime) else r.ts,
                proposal=r.proposal,
            )
            for r in rows
        ]  # fmt: skip
        assert replay_status(log) is SampleStatus.CANDIDATE_BASELINE


def test_labeller_cannot_approve(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        pool.label(
            wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
        )
        with pytest.raises(pool.ActionForbidden, match="approver"):
            pool.approve(
                wh, sid, from_status=SampleStatus.PROBLEM, actor="lena", roles=[Role.LABELLER]
            )
        with pytest.raises(pool.InvalidAction, match="reason"):
            pool.transition(
                wh, sid, SampleStatus.DOWNWEIGHTED, from_status=SampleStatus.PROBLEM, actor="ari",
                roles=[Role.APPROVER],
            )  # fmt: skip
        with pytest.raises(pool.ActionConflict):
            pool.label(
                wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
            )


def test_proposals_queue_approve_and_decline(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        a, b = seed_sample(wh, "c1"), seed_sample(wh, "c2")
        for sid in (a, b):
            pool.label(
                wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
            )
            pool.propose(
                wh,
                sid,
                SampleStatus.CANDIDATE_BASELINE,
                actor="trainer",
                rule="solved_after_training",
                evidence={"solved_version": "model_v2"},
            )
        again = pool.propose(
            wh, a, SampleStatus.CANDIDATE_BASELINE, actor="trainer", rule="solved_after_training"
        )
        queue = pool.approval_queue(wh)
        assert {p.sample_id for p in queue} == {a, b}
        assert again.transition_id in {p.transition_id for p in queue}
        assert all(p.rule == "solved_after_training" for p in queue)
        moved = pool.approve(
            wh, a, from_status=SampleStatus.PROBLEM, actor="ari", roles=[Role.APPROVER]
        )
        assert moved.evidence["solved_version"] == "model_v2"
        assert (
            pool.decline_proposals(wh, b, actor="ari", roles=[Role.APPROVER], reason="one-off") == 1
        )
        assert pool.approval_queue(wh) == ()
        with pytest.raises(pool.ActionConflict):
            pool.propose(wh, a, SampleStatus.PROBLEM, actor="trainer", rule="x")


def test_label_from_qa_is_idempotent(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        assert pool.label_from_qa(wh, _qa("nope"), taxonomy=DEFAULT_TAXONOMY) is False
        sid = seed_sample(wh, "c1")
        verdict = _qa("c1")
        assert pool.label_from_qa(wh, verdict, taxonomy=DEFAULT_TAXONOMY) is True
        assert pool.label_from_qa(wh, verdict, taxonomy=DEFAULT_TAXONOMY) is True
        detail = pool.get_sample(wh, sid)
        assert [t.action for t in detail.transitions] == ["capture", "label"]
        assert detail.transitions[-1].transition_id == f"{sid}:qa-qa-1"
        assert detail.transitions[-1].actor == "qa-anna"
        assert detail.label is not None
        assert (detail.label.source, detail.label.revision) == ("qa_event", 1)
        assert pool.label_from_qa(wh, _qa("c1", "qa-2"), taxonomy=DEFAULT_TAXONOMY) is False
        seed_sample(wh, "c2")
        invalid = _qa("c2", "qa-3", corrected_response=None)
        assert pool.label_from_qa(wh, invalid, taxonomy=DEFAULT_TAXONOMY) is False


def test_label_from_verdicts_batch_matches_one_by_one(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        a, b = seed_sample(wh, "c1"), seed_sample(wh, "c2")
        batch = [
            _qa("c1", "qa-1"),
            _qa("c1", "qa-1"),  # redelivered in the same batch: applied once, in force
            _qa("c1", "qa-2"),  # second verdict on a sample labelled by this batch
            _qa("c2", "qa-3", corrected_response=None),  # Reject without a correction
            _qa("c2", "qa-4", acceptance="Risk", problem_types=["missing_knowledge"]),
            _qa("nope", "qa-5"),  # no sample
        ]
        results = pool.label_from_verdicts(wh, batch, taxonomy=DEFAULT_TAXONOMY)
        assert results == [True, True, False, False, True, False]
        first, second = pool.get_sample(wh, a), pool.get_sample(wh, b)
        assert [t.action for t in first.transitions] == ["capture", "label"]
        assert [t.seq for t in first.transitions] == [0, 1]
        assert first.transitions[-1].transition_id == f"{a}:qa-qa-1"
        assert first.label is not None
        assert first.label.revision == 1
        assert second.label is not None
        assert second.label.problem_types == ("missing_knowledge",)
        assert second.transitions[-1].transition_id == f"{b}:qa-qa-4"
        again = pool.label_from_verdicts(wh, batch, taxonomy=DEFAULT_TAXONOMY)
        assert again == results
        assert len(pool.get_sample(wh, a).transitions) == 2


def test_filters_and_masking(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        seed_sample(wh, "c1", detectors=("complaint",), risk_weight=1.0)
        seed_sample(wh, "c2", detectors=("qa_flag",), risk_weight=5.0, model_version="model_v2")
        assert pool.list_samples(wh, SampleFilter(detector="qa_flag")).total == 1
        assert pool.list_samples(wh, SampleFilter(risk_min=2.0)).total == 1
        assert pool.list_samples(wh, SampleFilter(model_version="model_v1")).total == 1
        assert pool.list_samples(wh, SampleFilter(search="REFUND")).total == 2
        assert pool.list_samples(wh, SampleFilter(search="c2")).total == 1
        assert pool.list_samples(wh, SampleFilter(limit=1)).total == 2
        masked = pool.get_sample(wh, "smp-c1")
        assert PII_PHONE not in masked.transcript[0].text
        assert "[PHONE]" in masked.transcript[0].text
        with pytest.raises(pool.SampleNotFound):
            pool.get_sample(wh, "smp-none")


def test_labelling_through_the_api(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from analytics.console.app import create_console
    from tests.unit.console.conftest import ADMIN_KEY, console_settings

    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        app = create_console(warehouse=wh, settings=console_settings(tmp_path))
        with TestClient(app) as client:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            made = client.post(
                "/api/users", json={"username": "lena", "roles": ["labeller"]}, headers=admin
            )
            lena = {"Authorization": f"Bearer {made.json()['api_key']}"}
            moved = client.post(f"/api/samples/{sid}/label", json=RISK_LABEL, headers=lena)
            assert moved.status_code == 200, moved.text
            detail = client.get(f"/api/samples/{sid}", headers=lena).json()
            assert detail["summary"]["status"] == "problem"
            audit = detail["transitions"][-1]
            assert (audit["action"], audit["actor"], audit["role"]) == ("label", "lena", "labeller")
            refused = client.post(
                f"/api/samples/{sid}/approve", json={"from_status": "problem"}, headers=lena
            )
            assert refused.status_code == 403
            assert pool.get_sample(wh, sid).summary.status == "problem"


def test_first_seen_version_follows_the_lineage(tmp_path: Path) -> None:
    """A type observed in model_v2 and in its ancestor model_v1 was first seen in model_v1."""
    from datetime import UTC, datetime

    from analytics.pool import first_seen_of
    from analytics.warehouse import Warehouse

    wh = Warehouse.connect(dsn=f"chdb://{tmp_path}/warehouse", database="loraloop")
    try:
        wh.migrate(text_ttl_days=30)
        now = datetime.now(UTC)
        versions = [("model_v1", ""), ("model_v2", "model_v1"), ("model_v3", "model_v2")]
        wh.insert(
            "model_versions",
            [[v, p, "base", "active", "", True, "{}", now, now] for v, p in versions],
            column_names=[
                "version",
                "parent",
                "base_model",
                "status",
                "path",
                "gate_passed",
                "metrics",
                "created_at",
                "updated_at",
            ],
        )
        rows = [
            [
                "c1",
                "u1",
                "",
                "model_v2",
                now,
                now,
                1,
                [],
                False,
                "Reject",
                ["over_promise"],
                0,
                0,
                0,
                False,
                0.0,
                1,
            ],
            [
                "c2",
                "u2",
                "",
                "model_v1",
                now,
                now,
                1,
                [],
                False,
                "Risk",
                ["over_promise"],
                0,
                0,
                0,
                False,
                0.0,
                1,
            ],
            [
                "c3",
                "u3",
                "",
                "model_v3",
                now,
                now,
                1,
                [],
                False,
                "Reject",
                ["missing_knowledge"],
                0,
                0,
                0,
                False,
                0.0,
                1,
            ],
        ]
        from analytics.rows import CONVERSATION_COLUMNS

        wh.insert("conversations", rows, column_names=CONVERSATION_COLUMNS)
        assert first_seen_of(wh, "smp-c1", ["over_promise"]) == "model_v1"
        assert first_seen_of(wh, "smp-c3", ["missing_knowledge"]) == "model_v3"
        assert first_seen_of(wh, "smp-none", ["wrong_CTA_timing"]) == ""
    finally:
        wh.close()


def _count(wh: Warehouse, table: str, sid: str) -> int:
    rows = wh.query(
        f"SELECT count() FROM {table} WHERE sample_id = {{sid:String}}",  # noqa: S608
        {"sid": sid},
    ).result_rows
    return int(rows[0][0])


def test_a_problem_without_a_label_cannot_be_promoted(tmp_path: Path) -> None:
    """A label-less problem (what a bare captured → problem move made before) stays put."""
    from analytics.pool_log import TRANSITION_COLUMNS, transition_row
    from loraloop.lifecycle import ActorKind, build_transition

    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        with pytest.raises(pool.InvalidAction, match="/label"):
            pool.transition(
                wh, sid, SampleStatus.PROBLEM, from_status=SampleStatus.CAPTURED, actor="lena",
                roles=[Role.LABELLER],
            )  # fmt: skip
        rows = [
            build_transition(
                sid, src, dst, actor=who, role=role, actor_kind=kind, seq=seq,
                ts=T0 + timedelta(minutes=seq),
            )
            for seq, (src, dst, who, role, kind) in enumerate(
                [
                    (None, SampleStatus.CAPTURED, "sampler", Role.SYSTEM, ActorKind.SYSTEM),
                    (SampleStatus.CAPTURED, SampleStatus.PROBLEM, "lena", Role.LABELLER,
                     ActorKind.HUMAN),
                ]
            )
        ]  # fmt: skip
        wh.insert(
            "sample_transitions", [transition_row(r) for r in rows], column_names=TRANSITION_COLUMNS
        )
        with pytest.raises(pool.InvalidAction, match="it has no label"):
            pool.approve(
                wh, sid, from_status=SampleStatus.PROBLEM, actor="ari", roles=[Role.APPROVER]
            )
        assert pool.get_sample(wh, sid).summary.status == "problem"


def test_a_stale_from_status_is_refused(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        pool.label(
            wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
        )
        ari = {"actor": "ari", "roles": [Role.APPROVER]}
        moved = pool.approve(wh, sid, from_status=SampleStatus.PROBLEM, **ari)  # type: ignore[arg-type]
        assert moved.to_status is SampleStatus.CANDIDATE_BASELINE
        with pytest.raises(pool.StaleMove, match="candidate_baseline now, not problem"):
            pool.approve(wh, sid, from_status=SampleStatus.PROBLEM, **ari)  # type: ignore[arg-type]
        with pytest.raises(pool.StaleMove):
            pool.transition(
                wh, sid, SampleStatus.DEMOTED, from_status=SampleStatus.SECONDARY_BASELINE,
                reason="policy", **ari,  # type: ignore[arg-type]
            )  # fmt: skip
        assert pool.get_sample(wh, sid).summary.status == "candidate_baseline"
        assert len(pool.get_sample(wh, sid).transitions) == 3


def test_a_refused_move_writes_neither_label_nor_rows(tmp_path: Path) -> None:
    with fresh_warehouse(tmp_path) as wh:
        sid = seed_sample(wh, "c1")
        with pytest.raises(pool.InvalidAction, match="actor"):
            pool.label(
                wh, sid, RISK_LABEL, actor="x" * 200, roles=[Role.LABELLER],
                taxonomy=DEFAULT_TAXONOMY,
            )  # fmt: skip
        assert _count(wh, "sample_labels", sid) == 0
        assert _count(wh, "sample_transitions", sid) == 0  # not even the backfilled capture
        pool.label(
            wh, sid, RISK_LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
        )
        deep: dict[str, object] = {}
        for _ in range(260):
            deep = {"d": deep}
        with pytest.raises(pool.InvalidAction, match="JSON"):
            pool.propose(
                wh, sid, SampleStatus.CANDIDATE_BASELINE, actor="trainer", rule="r", evidence=deep
            )
        assert _count(wh, "sample_transitions", sid) == 2  # capture and label only
