"""Approved training data stays what was approved (issue 16 #5, #6), with figures.

Over the real embedded warehouse: samples approved to secondary_baseline, then a third of
their conversations get a turn re-published with new text and a third a new event at an
existing turn index. No export (the trainer's pool read, the console's JSONL) may carry a
word published after the approval; every changed sample is flagged for re-review and its
next promotion refused. QA verdicts naming other conversations' samples label nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from analytics import pool
from analytics.flags import FlagKind, read_flags
from analytics.pool_models import SampleFilter
from analytics.rows import COLUMNS
from loraloop.events import QAVerdict
from loraloop.lifecycle import DEFAULT_TAXONOMY, Role, SampleStatus
from tests.pool_seed import T0, fresh_warehouse, seed_sample
from tests.reliability.figures import record
from trainer.pool import SKIP_CHANGED, read_pool
from trainer.registry import Registry

PER_KIND = 4
INJECTED = "POSTED AFTER APPROVAL"
LABEL = {
    "acceptance": "Risk",
    "problem_types": ["over_promise"],
    "risk_level": "high",
    "corrected_response": "I cannot promise a date.",
}


def _verdict(conversation_id: str, sample_id: str, event_id: str) -> QAVerdict:
    return QAVerdict.model_validate(
        {
            "event_id": event_id, "ts": T0 + timedelta(hours=1),
            "conversation_id": conversation_id, "sample_id": sample_id, "reviewer": "qa-bot",
            "acceptance": "Reject", "problem_types": ["over_promise"], "risk_level": "low",
            "corrected_response": "Overwritten by a foreign verdict.",
        }
    )  # fmt: skip


def test_changed_transcripts_never_reach_training_data(tmp_path: Path) -> None:
    kinds = ("republished", "added", "untouched")
    with fresh_warehouse(tmp_path) as wh:
        by_kind: dict[str, list[str]] = {k: [] for k in kinds}
        for kind in kinds:
            for i in range(PER_KIND):
                sid = seed_sample(wh, f"{kind}-{i}")
                pool.label(
                    wh, sid, LABEL, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY
                )
                for seen in (SampleStatus.PROBLEM, SampleStatus.CANDIDATE_BASELINE):
                    pool.approve(wh, sid, from_status=seen, actor="ari", roles=[Role.APPROVER])
                by_kind[kind].append(sid)
        rows = []
        for kind, event in (("republished", "t0"), ("added", "x")):
            for i in range(PER_KIND):
                cid = f"{kind}-{i}"
                rows.append(
                    [f"{cid}-{event}", T0, cid, "u1", 0, "user", INJECTED, "model_v1", False]
                )
        wh.insert("turns", rows, column_names=COLUMNS["turns"])

        read = read_pool(wh, registry=Registry(tmp_path / "registry"), include_simulated=False)
        exported = pool.export_samples(wh, SampleFilter(limit=100), reveal_pii=True)
        leaked = sum(
            INJECTED in m.content for s in read.samples for m in s.messages
        ) + sum(INJECTED in m["content"] for r in exported for m in r["messages"])  # fmt: skip
        trained = {s.sample_id for s in read.samples}
        skipped = {sid for sid, why in read.skipped.items() if why.startswith(SKIP_CHANGED)}
        flagged = {f.sample_id for f in read_flags(wh, kind=FlagKind.REREVIEW)}
        listed = {s.sample_id for s in pool.list_samples(wh).items if s.needs_review}
        refused = 0
        for sid in (*by_kind["republished"], *by_kind["added"]):
            with pytest.raises(pool.TranscriptChanged):
                pool.approve(
                    wh, sid, from_status=SampleStatus.SECONDARY_BASELINE, actor="ari",
                    roles=[Role.APPROVER],
                )  # fmt: skip
            refused += 1

        victims = [seed_sample(wh, f"victim-{i}") for i in range(PER_KIND)]
        seed_sample(wh, "intruder")
        verdicts = [_verdict("intruder", victim, f"qa-{i}") for i, victim in enumerate(victims)]
        applied = pool.label_from_verdicts(wh, verdicts, taxonomy=DEFAULT_TAXONOMY)
        letters = wh.query(
            "SELECT count() FROM dead_letters FINAL WHERE source_topic = {t:String}",
            {"t": pool.QA_REFUSED_TOPIC},
        ).result_rows[0][0]
        victim_states = [pool.get_sample(wh, v) for v in victims]

    changed = {*by_kind["republished"], *by_kind["added"]}
    assert leaked == 0
    assert skipped == set(by_kind["republished"])
    assert trained == {*by_kind["added"], *by_kind["untouched"]}
    assert flagged == changed
    assert listed == changed
    assert refused == len(changed)
    assert applied == [False] * len(victims)
    assert letters == len(victims)
    assert [d.label for d in victim_states] == [None] * len(victims)
    assert {d.summary.status for d in victim_states} == {SampleStatus.CAPTURED}
    record(
        "changed transcript after approval",
        approved_samples=len(kinds) * PER_KIND,
        republished_turns=PER_KIND,
        added_events=PER_KIND,
        post_approval_words_exported=leaked,
        skipped_with_reason=len(skipped),
        exported_frozen=len(set(by_kind["added"]) & trained),
        flagged_for_rereview=len(flagged),
        promotions_refused=refused,
        foreign_qa_verdicts=len(verdicts),
        foreign_qa_applied=applied.count(True),
        foreign_qa_dead_lettered=int(letters),
    )
