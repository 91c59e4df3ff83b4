"""Proposals by prompt family on canary traffic, and a rollback's withdrawals (real engine)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics import pool
from analytics.flags import FlagKind, read_flags
from analytics.pool_log import TRANSITION_COLUMNS, transition_row
from analytics.proposals import (
    WITHDRAWN,
    FamilyRule,
    HoldReason,
    pending_proposals,
    propose_solved,
    withdraw_version,
)
from analytics.rows import COLUMNS, CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from analytics.warehouse import Warehouse
from loraloop.lifecycle import ActorKind, Role, SampleStatus, build_transition
from tests.pool_seed import fresh_warehouse
from trainer.rollout import RolloutAction, RolloutController, RolloutStatus, RolloutStore
from trainer.rollout_config import RolloutSettings
from trainer.rollout_errors import RolloutStateError
from trainer.router import Router, RoutingTable

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SINCE = T0 + timedelta(hours=1)
PREV, NEW = "model_v1", "model_v2"
TYPE = "missing_knowledge"
ACTOR = "rollout"
VERDICTS = {TYPE: {"name": TYPE, "verdict": "solved_candidate"}}
RULE = FamilyRule(min_conversations=3, max_problem_rate=0.1)

# One family per case; the prompts are the manifest's normalized first user turns.
FIXED, FAILING, THIN, HELD_OUT = "fam-fixed", "fam-failing", "fam-thin", "fam-heldout"
PROMPTS = {
    FIXED: "what does the course cost",
    FAILING: "is there a refund",
    THIN: "when does it start",
    HELD_OUT: "who teaches it",
}
SAMPLES = {
    FIXED: ["smp-fixed-a", "smp-fixed-b"],
    FAILING: ["smp-failing"],
    THIN: ["smp-thin"],
    HELD_OUT: ["smp-heldout"],
}
TRAINED = sorted([*SAMPLES[FIXED], *SAMPLES[FAILING], *SAMPLES[THIN]])
FAMILIES = {
    fid: {
        "split": "heldout_problem" if fid == HELD_OUT else "train",
        "prompts": [PROMPTS[fid]],
        "problem_types": [TYPE],
        "sample_ids": SAMPLES[fid],
    }
    for fid in PROMPTS
}


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    with fresh_warehouse(tmp_path) as wh:
        yield wh


def _label_row(sample_id: str, types: Sequence[str], ts: datetime) -> list[Any]:
    acceptance = "Risk" if types else "Accept"
    reply = "The course costs 199 dollars." if types else ""
    return [
        sample_id, 1, acceptance, list(types), "low", reply, "", "ann", "labeller", "console", ts,
        PREV,
    ]  # fmt: skip


def _sample_row(sample_id: str, conversation_id: str, version: str, ts: datetime) -> list[Any]:
    return [
        sample_id, conversation_id, f"user-{conversation_id}", "captured", [], [], 1.0, 1.0,
        version, version, ts, ts, 1, "uniform",
    ]  # fmt: skip


def _problem_samples(warehouse: Warehouse, sample_ids: Sequence[str]) -> None:
    """Pool samples labelled ``TYPE`` on the parent's traffic: status problem."""
    samples, labels, moves = [], [], []
    for sid in sample_ids:
        samples.append(_sample_row(sid, f"conv-{sid}", PREV, T0))
        labels.append(_label_row(sid, [TYPE], T0))
        capture = build_transition(
            sid, None, SampleStatus.CAPTURED, actor="sampler", role=Role.SYSTEM,
            actor_kind=ActorKind.SYSTEM, seq=0, ts=T0,
        )  # fmt: skip
        label = build_transition(
            sid, SampleStatus.CAPTURED, SampleStatus.PROBLEM, actor="ann", role=Role.LABELLER,
            actor_kind=ActorKind.HUMAN, seq=1, ts=T0,
        )  # fmt: skip
        moves += [transition_row(capture), transition_row(label)]
    warehouse.insert("samples", samples, column_names=SAMPLE_COLUMNS)
    warehouse.insert("sample_labels", labels, column_names=pool.LABEL_COLUMNS)
    warehouse.insert("sample_transitions", moves, column_names=TRANSITION_COLUMNS)


def _canary(
    warehouse: Warehouse,
    conversation_id: str,
    opening: str,
    *,
    version: str = NEW,
    at: datetime = SINCE + timedelta(minutes=5),
    user: str | None = None,
    labelled: Sequence[str] | None = None,
) -> None:
    """A served conversation opening with ``opening``; ``labelled``: its sample's types."""
    who = user or f"user-{conversation_id}"
    warehouse.insert(
        "conversations",
        [[conversation_id, who, "standard", version, at, at, 2, [], False, "", [], 0, 0, 0,
          True, 1.0, 1]],
        column_names=CONVERSATION_COLUMNS,
    )  # fmt: skip
    turns = [
        [f"{conversation_id}-t0", at, conversation_id, who, 0, "user", opening, "", False],
        [f"{conversation_id}-t1", at, conversation_id, who, 1, "assistant", "…", version, False],
        [f"{conversation_id}-t2", at, conversation_id, who, 2, "user", "thanks", "", False],
    ]
    warehouse.insert("turns", turns, column_names=COLUMNS["turns"])
    if labelled is not None:
        sid = f"smp-{conversation_id}"
        warehouse.insert(
            "samples", [_sample_row(sid, conversation_id, version, at)], column_names=SAMPLE_COLUMNS
        )
        warehouse.insert(
            "sample_labels", [_label_row(sid, labelled, at)], column_names=pool.LABEL_COLUMNS
        )


def _traffic(warehouse: Warehouse) -> None:
    """Canary traffic per family, with conversations that must not count."""
    for i in range(4):  # fixed: 4 conversations, one reviewed and clean
        _canary(warehouse, f"fixed-{i}", "What does the COURSE cost?!", labelled=[] if i else None)
    for i in range(4):  # failing: 2 of 4 still labelled with the type
        _canary(warehouse, f"failing-{i}", "Is there a refund?", labelled=[TYPE] if i < 2 else [])
    _canary(warehouse, "thin-0", "When does it start?")
    _canary(warehouse, "thin-1", "when does it start")
    # Not the new version's unseen traffic: before the rollout, the parent's, a tester's.
    _canary(warehouse, "thin-old", "When does it start?", at=T0)
    _canary(warehouse, "thin-prev", "When does it start?", version=PREV)
    _canary(warehouse, "thin-tester", "When does it start?", user="qa-1")
    _canary(warehouse, "other", "Something else entirely", labelled=[TYPE])


def _propose(warehouse: Warehouse, **extra: Any) -> Any:
    kwargs: dict[str, Any] = {
        "version": NEW, "verdicts": VERDICTS, "actor": ACTOR, "ts": SINCE + timedelta(hours=1),
        "trained_sample_ids": TRAINED, "families": FAMILIES, "since": SINCE,
        "excluded_users": ["qa-1"], "rule": RULE,
    }  # fmt: skip
    return propose_solved(warehouse, **{**kwargs, **extra})


def _proposed(warehouse: Warehouse) -> list[str]:
    rows = warehouse.query(
        "SELECT sample_id FROM sample_transitions FINAL WHERE proposal ORDER BY sample_id"
    ).result_rows
    return [str(r[0]) for r in rows]


def test_only_trained_samples_of_a_fixed_family_are_proposed(warehouse: Warehouse) -> None:
    _problem_samples(warehouse, [s for ids in SAMPLES.values() for s in ids])
    _traffic(warehouse)
    outcome = _propose(warehouse)
    assert sorted(t.sample_id for t in outcome.written) == SAMPLES[FIXED]
    assert _proposed(warehouse) == SAMPLES[FIXED]
    assert outcome.held == {
        HoldReason.NOT_TRAINED: ("smp-heldout",),  # solved type, but never trained on
        HoldReason.FAMILY_STILL_FAILING: ("smp-failing",),  # 2 / 4 > 0.1
        HoldReason.TOO_FEW_CONVERSATIONS: ("smp-thin",),  # 2 < 3: not yet
    }
    assert "3 held back" in outcome.summary()
    family = outcome.written[0].evidence["family"]
    assert family == {
        "id": FIXED, "conversations": 4, "problem_conversations": 0, "problem_share": 0.0,
        "problem_types": [TYPE], "min_conversations": 3, "max_problem_rate": 0.1,
        "since": SINCE.isoformat(),
    }  # fmt: skip
    assert outcome.written[0].evidence["version"] == NEW
    assert outcome.families[FAILING].labelled_types == {TYPE: 2}
    assert outcome.families[THIN].conversations == 2  # old, parent's and tester's left out


def test_a_later_look_proposes_a_family_seen_enough_and_nothing_twice(
    warehouse: Warehouse,
) -> None:
    _problem_samples(warehouse, [s for ids in SAMPLES.values() for s in ids])
    _traffic(warehouse)
    _propose(warehouse)
    _canary(warehouse, "thin-2", "When does it START")
    again = _propose(warehouse)
    assert [t.sample_id for t in again.written] == ["smp-thin"]
    assert _proposed(warehouse) == sorted([*SAMPLES[FIXED], "smp-thin"])
    third = _propose(warehouse)
    assert third.written == ()


def test_without_families_nothing_is_proposed(warehouse: Warehouse) -> None:
    _problem_samples(warehouse, SAMPLES[FIXED])
    _traffic(warehouse)
    outcome = _propose(warehouse, families=None)
    assert outcome.written == ()
    assert outcome.held == {HoldReason.NO_FAMILY_EVIDENCE: tuple(SAMPLES[FIXED])}
    assert _proposed(warehouse) == []


def _rollback_setup(warehouse: Warehouse) -> None:
    """Two proposals of NEW (one then approved), and an older version's proposal."""
    _problem_samples(warehouse, [*SAMPLES[FIXED], "smp-other"])
    _traffic(warehouse)
    _propose(warehouse)
    pool.approve(
        warehouse,
        "smp-fixed-b",
        from_status=SampleStatus.PROBLEM,
        actor="ari",
        roles=[Role.APPROVER],
    )
    pool.propose(
        warehouse, "smp-other", SampleStatus.CANDIDATE_BASELINE, actor="trainer",
        rule="solved_after_training", evidence={"solved_version": PREV},
    )  # fmt: skip


def _counts(warehouse: Warehouse) -> tuple[int, int]:
    flags = warehouse.query("SELECT count() FROM sample_flags").result_rows[0][0]
    decisions = warehouse.query("SELECT count() FROM proposal_decisions").result_rows[0][0]
    return int(flags), int(decisions)


def test_rollback_withdraws_pending_proposals_and_flags_approvals(warehouse: Warehouse) -> None:
    _rollback_setup(warehouse)
    assert [p.sample_id for p in pending_proposals(warehouse, NEW)] == ["smp-fixed-a"]
    when = SINCE + timedelta(hours=2)
    done = withdraw_version(warehouse, version=NEW, actor=ACTOR, reason="over_promise up", ts=when)
    assert done.rereview == ("smp-fixed-b",)
    assert len(done.withdrawn) == 1
    assert pending_proposals(warehouse, NEW) == []
    queue = pool.approval_queue(warehouse)
    assert [p.sample_id for p in queue] == ["smp-other"]  # another version's stays open
    with pytest.raises(pool.ProposalWithdrawn, match=r"withdrawn .*model_v2 rolled back"):
        pool.approve(
            warehouse, "smp-fixed-a", from_status=SampleStatus.PROBLEM, actor="ari",
            roles=[Role.APPROVER],
        )  # fmt: skip
    decision = warehouse.query(
        "SELECT transition_id, decision, actor, role, reason FROM proposal_decisions"
    ).result_rows
    assert decision == [(done.withdrawn[0], WITHDRAWN, ACTOR, "system", f"{NEW} rolled back: "
                         "over_promise up")]  # fmt: skip
    withdrawn = read_flags(warehouse, kind=FlagKind.PROPOSAL_WITHDRAWN)
    assert [(f.sample_id, f.version, f.actor) for f in withdrawn] == [("smp-fixed-a", NEW, ACTOR)]
    assert withdrawn[0].evidence["proposal_id"] == done.withdrawn[0]
    rereview = read_flags(warehouse, kind=FlagKind.REREVIEW)
    assert [(f.sample_id, f.version, f.actor) for f in rereview] == [("smp-fixed-b", NEW, ACTOR)]
    assert "rolled back" in rereview[0].reason
    assert rereview[0].evidence["rollback_reason"] == "over_promise up"
    # Nothing moved: the approved sample stays where the approver put it.
    status = warehouse.query(
        "SELECT sample_id, status FROM pool WHERE sample_id IN {ids:Array(String)} "
        "ORDER BY sample_id",
        {"ids": SAMPLES[FIXED]},
    ).result_rows
    assert status == [("smp-fixed-a", "problem"), ("smp-fixed-b", "candidate_baseline")]


def test_rollback_bookkeeping_twice_writes_nothing_new(warehouse: Warehouse) -> None:
    _rollback_setup(warehouse)
    kwargs: dict[str, Any] = {"version": NEW, "actor": ACTOR, "ts": SINCE + timedelta(hours=2)}
    withdraw_version(warehouse, reason="first", **kwargs)
    before = _counts(warehouse)
    assert before == (2, 1)
    again = withdraw_version(warehouse, reason="second", **kwargs)
    assert (again.withdrawn, again.rereview) == ((), ())
    assert _counts(warehouse) == before


def test_a_manual_rollback_reroutes_and_withdraws(warehouse: Warehouse) -> None:
    _rollback_setup(warehouse)
    settings = RolloutSettings(steps=[5.0, 100.0])
    store = RolloutStore(warehouse, settings)
    store.start(NEW, PREV, now=SINCE)
    router = Router(RoutingTable(PREV, NEW, 5.0), settings=settings)
    controller = RolloutController(warehouse, router, settings=settings)
    decision = controller.roll_back(
        NEW, reason="replies look wrong", now=SINCE + timedelta(hours=3)
    )
    assert decision.action is RolloutAction.ROLL_BACK
    assert decision.withdrawal is not None
    assert decision.withdrawal.rereview == ("smp-fixed-b",)
    assert router.table == RoutingTable(PREV)
    loaded = store.load(NEW)
    assert loaded is not None
    assert loaded.status is RolloutStatus.ROLLED_BACK
    assert pending_proposals(warehouse, NEW) == []
    row = warehouse.query(
        "SELECT evidence FROM rollouts FINAL WHERE version = {v:String} AND decision = 'roll_back'",
        {"v": NEW},
    ).result_rows
    assert orjson.loads(row[0][0])["withdrawal"]["rereview"] == ["smp-fixed-b"]
    with pytest.raises(RolloutStateError, match="rolled_back already"):
        controller.roll_back(NEW, reason="again")
    assert controller.withdraw(NEW, reason="again").withdrawn == ()
