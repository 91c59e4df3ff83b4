"""Version comparison on the real engine: rates, the two-looks rule, proposals, the hourly view."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.comparison import arm_sums, compare, health, look, previous_solved
from analytics.pool_log import TRANSITION_COLUMNS, transition_row
from analytics.rate_config import RateQuerySettings
from analytics.rate_queries import guardrail_specs, target_specs
from analytics.rows import COLUMNS, CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from analytics.stats import ClusterSums, ComparisonSettings, Verdict
from analytics.warehouse import Warehouse
from loraloop.cli.compare import compare as cli_compare
from loraloop.lifecycle import ActorKind, Role, SampleStatus, build_transition
from trainer.rollout import (
    RolloutAction,
    RolloutController,
    RolloutDecision,
    RolloutState,
    RolloutStatus,
    RolloutStore,
    Router,
    RoutingTable,
)
from trainer.rollout_config import RolloutSettings
from trainer.rollout_errors import RolloutStateError

REPO = Path(__file__).resolve().parents[2]

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PREV, NEW = "model_v1", "model_v2"
TYPE = "missing_knowledge"
USERS = 800
PER_USER = 3
TRAINED = 10
LABEL_COLUMNS = (
    "sample_id", "revision", "acceptance", "problem_types", "risk_level", "corrected_response",
    "notes", "labelled_by", "role", "source", "ts",
)  # fmt: skip


@dataclass
class Seeded:
    """What was written, for direct computation."""

    per_user: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)
    problem_samples: list[str] = field(default_factory=list)


def _has_problem(arm: str, user: int, k: int) -> bool:
    if arm == PREV:
        return (user // 2 + k) % 10 < 3  # 30 %
    return (user // 2 * 3 + k) % 20 == 0  # 5 %


def _conversation(cid: str, user: str, arm: str, ts: datetime, *, problem: bool, rev: int) -> list:
    sampled = int(cid.rsplit("c", 1)[1]) % 2 == 0
    return [
        cid, user, "standard", arm, ts, ts + timedelta(minutes=5), 4, [], False,
        "Risk" if problem and rev > 1 else "", [TYPE] if problem and rev > 1 else [],
        1 if cid.endswith("0") else 0, 0, 0, sampled, 0.5 if sampled else 0.0, rev,
    ]  # fmt: skip


def _seed(warehouse: Warehouse, first_user: int = 0) -> Seeded:
    seeded = Seeded()
    conversations, samples, labels, assignments, transitions = [], [], [], [], []
    for i in range(first_user, first_user + USERS):
        arm = PREV if i % 2 == 0 else NEW
        user = f"u{i}"
        assignments.append([user, arm, T0])
        n, y = 0, 0.0
        for k in range(PER_USER):
            cid = f"{user}c{k}"
            problem = _has_problem(arm, i, k)
            ts = T0 + timedelta(minutes=10 + k)
            for rev in (1, 2):  # the stream rewrites a conversation at each event
                conversations.append(_conversation(cid, user, arm, ts, problem=problem, rev=rev))
            n += 1
            if k % 2 == 0:  # sampled with pi = 0.5 and labelled
                sid = f"smp-{cid}"
                samples.append([
                    sid, cid, user, "captured", [], [], 1.0, 0.5, arm, arm, ts, ts, 1, "uniform",
                ])  # fmt: skip
                labels.append([
                    sid, 1, "Risk" if problem else "Accept", [TYPE] if problem else [], "low",
                    "fixed" if problem else "", "", "ann", "labeller", "console", ts,
                ])  # fmt: skip
                y += 2.0 if problem else 0.0
                if problem and arm == PREV:
                    seeded.problem_samples.append(sid)
                    transitions += _to_problem(sid, ts)
        seeded.per_user.setdefault(arm, {})[user] = (n, y)
        if arm == PREV:  # before the experiment: never counted
            old = _conversation(f"{user}c9", user, arm, T0 - timedelta(days=1), problem=True, rev=2)
            conversations.append(old)
    warehouse.insert("conversations", conversations, column_names=CONVERSATION_COLUMNS)
    warehouse.insert("samples", samples, column_names=SAMPLE_COLUMNS)
    warehouse.insert("sample_labels", labels, column_names=LABEL_COLUMNS)
    warehouse.insert(
        "assignments", assignments, column_names=("user_id", "version", "first_exposure")
    )
    warehouse.insert("sample_transitions", transitions, column_names=TRANSITION_COLUMNS)
    return seeded


def _to_problem(sample_id: str, ts: datetime) -> list[list[object]]:
    capture = build_transition(
        sample_id, None, SampleStatus.CAPTURED, actor="sampler", role=Role.SYSTEM,
        actor_kind=ActorKind.SYSTEM, seq=0, ts=ts,
    )  # fmt: skip
    label = build_transition(
        sample_id, SampleStatus.CAPTURED, SampleStatus.PROBLEM, actor="ann",
        role=Role.LABELLER, actor_kind=ActorKind.HUMAN, seq=1, ts=ts,
    )  # fmt: skip
    return [transition_row(capture), transition_row(label)]


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    wh = Warehouse.connect(dsn=f"chdb://{tmp_path}/warehouse", database="loraloop")
    try:
        wh.migrate(text_ttl_days=3650)
        yield wh
    finally:
        wh.close()


def _rates() -> RateQuerySettings:
    return RateQuerySettings(problem_types=[TYPE, "over_promise"])


def test_cluster_sums_match_direct_computation(warehouse: Warehouse) -> None:
    seeded = _seed(warehouse)
    specs = target_specs(_rates()) + guardrail_specs(_rates())
    sums = arm_sums(warehouse, specs, versions=(NEW, PREV), settings=_rates())
    for arm in (PREV, NEW):
        users = seeded.per_user[arm]
        expected = ClusterSums.from_users(
            [n for n, _ in users.values()], [y for _, y in users.values()]
        )
        got = sums.get(arm, TYPE)
        assert got.distinct_users == expected.users == USERS // 2
        assert got.n[0] == expected.n == USERS // 2 * PER_USER
        assert got.y[0] == pytest.approx(expected.y)
        assert got.yy[0][0] == pytest.approx(expected.yy)
        assert got.yn[0][0] == pytest.approx(expected.ny)
        assert sums.get(arm, "over_promise").y == (0.0,)
        assert sums.get(arm, "cta_click_rate").y == (USERS // 2,)  # c0 of every user
        coverage = sums.coverage_of(arm)
        assert coverage.sampled == coverage.reviewed == USERS // 2 * 2  # k = 0, 2 sampled
        assert coverage.share == 1.0


def test_steps_split_conversations_and_leave_out_what_came_before(warehouse: Warehouse) -> None:
    """Two steps: k = 0 conversations (T0 + 10 min) in the first, k >= 1 in the second."""
    _seed(warehouse)
    specs = target_specs(_rates()) + guardrail_specs(_rates())
    bounds = [T0 + timedelta(minutes=10), T0 + timedelta(minutes=11)]
    sums = arm_sums(warehouse, specs, versions=(NEW, PREV), settings=_rates(), bounds=bounds)
    got = sums.get(PREV, "cta_click_rate")
    assert got.n == (USERS // 2, USERS // 2 * (PER_USER - 1))  # the day-before c9 is left out
    assert got.nn[0][1] == USERS // 2 * (PER_USER - 1)  # each user spans both steps
    assert got.y == (USERS // 2, 0)
    later = arm_sums(
        warehouse, specs, versions=(NEW, PREV), settings=_rates(), bounds=bounds[1:]
    ).get(PREV, "cta_click_rate")
    assert later.n == (USERS // 2 * (PER_USER - 1),)  # before the rollout: not concurrent


def test_allowlisted_testers_are_left_out_and_reported_apart(warehouse: Warehouse) -> None:
    _seed(warehouse)
    specs = target_specs(_rates()) + guardrail_specs(_rates())
    testers = ["u1", "u3"]
    sums = arm_sums(warehouse, specs, versions=(NEW, PREV), settings=_rates(), excluded=testers)
    assert sums.get(NEW, TYPE).distinct_users == USERS // 2 - 2
    detailed = compare(
        warehouse, new=NEW, prev=PREV, split=0.5, rates=_rates(), excluded_users=testers
    )
    assert detailed.testers == {NEW: {"users": 2, "conversations": PER_USER * 2}}
    assert detailed.comparison.targets[TYPE].new.units == USERS // 2 - 2


def _family_traffic(warehouse: Warehouse, conversations: int) -> None:
    """The first user turn of ``conversations`` of the new arm: the trained family's prompt."""
    rows = [
        [f"u{i}c1-t0", T0 + timedelta(minutes=11), f"u{i}c1", f"u{i}", 0, "user",
         "What is the refund window?", "", False]
        for i in range(1, 2 * conversations, 2)  # odd users are the new arm
    ]  # fmt: skip
    warehouse.insert("turns", rows, column_names=COLUMNS["turns"])


def test_solved_only_on_second_look_and_proposals(warehouse: Warehouse) -> None:
    seeded = _seed(warehouse)
    _family_traffic(warehouse, 3)
    trained = sorted(seeded.problem_samples)[:TRAINED]
    families = {"fam-refund": {"prompts": ["what is the refund window"], "sample_ids": trained}}
    kwargs = {
        "new": NEW, "prev": PREV, "split": 0.5, "actor": "rollout", "rates": _rates(),
        "families": families,
    }  # fmt: skip
    first = look(warehouse, **kwargs, trained_sample_ids=trained, now=T0 + timedelta(hours=2))
    assert first.decision.value == "proceed"
    assert first.targets[TYPE].solved_criteria_met
    assert first.targets[TYPE].verdict is not Verdict.SOLVED_CANDIDATE
    assert set(previous_solved(warehouse, new=NEW, prev=PREV)) == {TYPE}
    assert _proposals(warehouse) == []
    again = look(warehouse, **kwargs, trained_sample_ids=trained, now=T0 + timedelta(hours=3))
    assert again.targets[TYPE].verdict is not Verdict.SOLVED_CANDIDATE  # same data: one look
    _seed(warehouse, first_user=USERS)  # as many users again
    second = look(warehouse, **kwargs, trained_sample_ids=trained, now=T0 + timedelta(hours=3))
    assert second.targets[TYPE].verdict is Verdict.SOLVED_CANDIDATE
    assert second.targets["over_promise"].verdict is not Verdict.SOLVED_CANDIDATE
    assert _proposals(warehouse) == trained
    look(warehouse, **kwargs, trained_sample_ids=trained, now=T0 + timedelta(hours=4))
    assert _proposals(warehouse) == trained  # never proposed twice
    status = warehouse.query(
        "SELECT DISTINCT status FROM pool WHERE sample_id IN {ids:Array(String)}", {"ids": trained}
    )
    assert status.result_rows == [("problem",)]  # a proposal moves nothing


def _proposals(warehouse: Warehouse) -> list[str]:
    rows = warehouse.query(
        "SELECT sample_id, to_status, role, actor, JSONExtractString(evidence, 'verdict') "
        "FROM sample_transitions FINAL WHERE proposal ORDER BY sample_id"
    ).result_rows
    assert all(
        r[1:] == ("candidate_baseline", "system", "rollout", "solved_candidate") for r in rows
    )
    return [str(r[0]) for r in rows]


def test_hourly_view_agrees_with_raw(warehouse: Warehouse) -> None:
    _seed(warehouse)
    view = {
        (v, m): c
        for v, m, c in warehouse.query(
            "SELECT model_version, metric, uniqExactMerge(conversations) "
            "FROM conversation_metrics_hourly GROUP BY model_version, metric"
        ).result_rows
    }
    raw = warehouse.query(
        "SELECT model_version, count(), countIf(has(qa_problem_types, {t:String})), "
        "countIf(qa_acceptance IN ('Risk', 'Reject')), countIf(cta_clicks > 0) "
        "FROM conversations FINAL GROUP BY model_version",
        {"t": TYPE},
    ).result_rows
    assert raw
    for version, served, problem, risk, cta in raw:
        assert view[(version, "served")] == served
        assert view[(version, f"problem:{TYPE}")] == problem
        assert view[(version, "risk_reject_rate")] == risk
        assert view[(version, "cta_click_rate")] == cta
    warehouse.command("SYSTEM REFRESH VIEW metrics_hourly_snapshot")
    warehouse.command("SYSTEM WAIT VIEW metrics_hourly_snapshot")
    snapshot = warehouse.query(
        "SELECT model_version, metric, sum(conversations) FROM metrics_hourly_snapshot "
        "GROUP BY model_version, metric"
    ).result_rows
    assert {(v, m): c for v, m, c in snapshot} == view
    hourly = warehouse.query(
        "SELECT sum(conversations) FROM metrics_hourly WHERE metric = 'served'"
    ).result_rows[0][0]
    assert hourly == sum(r[1] for r in raw)


def test_controller_tick_records_and_reroutes(warehouse: Warehouse) -> None:
    _seed(warehouse)
    settings = RolloutSettings(
        require_guardrails_non_inferior=False, complete_requires_solved_target=False
    )
    store = RolloutStore(warehouse, settings)
    started = store.start(NEW, PREV, now=T0)
    assert store.load(NEW) == started
    with pytest.raises(RolloutStateError, match="once"):
        store.start(NEW, PREV)
    at_half = RolloutState(NEW, PREV, 3, RolloutStatus.RUNNING, T0, seq=1)  # the 50 % step
    store.record(RolloutDecision(RolloutAction.ADVANCE, at_half, "test"), now=T0)
    router = Router(RoutingTable(PREV, NEW, 50), settings=settings)
    decision = RolloutController(warehouse, router).tick(NEW, now=T0 + timedelta(hours=2))
    assert decision.action is RolloutAction.COMPLETE
    assert store.load(NEW) == decision.state
    assert router.table == RoutingTable(NEW)
    rows = warehouse.query(
        "SELECT decision, step_percent, JSONExtractString(evidence, 'comparison', 'decision') "
        "FROM rollouts FINAL WHERE version = {v:String} ORDER BY ts, rollout_id",
        {"v": NEW},
    ).result_rows
    assert sorted(rows) == [
        ("advance", 50.0, ""),
        ("complete", 100.0, "proceed"),
        ("start", 1.0, ""),
    ]


def test_grafana_dashboard_queries_run(warehouse: Warehouse) -> None:
    _seed(warehouse)
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/loraloop.json").read_text())
    queries = [t["rawSql"] for p in dashboard["panels"] for t in p["targets"]]
    queries.append(dashboard["templating"]["list"][0]["query"])
    for sql in queries:
        sql = re.sub(r"\$__timeFilter\(([^)]*)\)", r"\1 > toDateTime64(0, 3)", sql)
        sql = sql.replace("${version:singlequote}", "'model_v1', 'model_v2'")
        warehouse.query(sql)


def test_cli_compare_prints_table_and_json(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wh = Warehouse.connect(dsn=f"chdb://{isolated_env / 'warehouse'}", database="loraloop")
    try:
        wh.migrate(text_ttl_days=3650)
        _seed(wh)
    finally:
        wh.close()
    cli_compare(NEW, PREV, json_out=True, share=50.0, data_dir=isolated_env)
    payload = json.loads(capsys.readouterr().out)
    assert payload["decision"] == "proceed"
    assert payload["health"]["healthy"]
    assert payload["targets"][TYPE]["new"]["conversations"] == USERS // 2 * PER_USER
    cli_compare(NEW, PREV, json_out=False, share=50.0, data_dir=isolated_env)
    out = capsys.readouterr().out
    assert TYPE in out
    assert "decision: proceed" in out
    with pytest.raises(SystemExit):
        cli_compare(NEW, PREV, json_out=False, share=None, data_dir=isolated_env)
    assert "pass --share" in capsys.readouterr().err


def test_testers_do_not_trip_the_sample_ratio_check(warehouse: Warehouse) -> None:
    """Issue 14's case: 20 allowlisted testers among 2,000 users at a 1 % canary."""
    users = [(f"u{i}", NEW if i % 100 == 0 else PREV) for i in range(2_000)]
    testers = [f"tester{i}" for i in range(20)]
    users += [(t, NEW) for t in testers]
    rows = [
        _conversation(f"h-{user}-c{k}", user, arm, T0, problem=False, rev=1)
        for k, (user, arm) in enumerate(users)
    ]
    warehouse.insert("conversations", rows, column_names=COLUMNS["conversations"])
    settings = ComparisonSettings()
    counted = health(warehouse, new=NEW, prev=PREV, split=0.01, since=None, settings=settings)
    assert not counted.healthy  # p ≈ 1e-5: the rollout would hold
    left_out = health(
        warehouse, new=NEW, prev=PREV, split=0.01, since=None, settings=settings, excluded=testers
    )
    assert left_out.healthy
    assert left_out.srm_p_value > 0.1


def test_returning_users_of_the_stable_version_count_for_its_arm(warehouse: Warehouse) -> None:
    """A second rollout over a version with history: its users were assigned long ago.

    The stable arm's returning users have no new assignment, while the users bucketed into
    the canary (here: back from an earlier canary, ``model_v0``) get one; counting first
    assignments since the step began saw the canary's users only (the demo's third cycle:
    users [44, 49] against 75/25, held at every look).
    """
    step = T0 + timedelta(days=30)
    stable = [f"s{i}" for i in range(300)]
    canary = [f"c{i}" for i in range(100)]
    assigned = [[u, PREV, T0] for u in stable] + [[u, "model_v0", T0] for u in canary]
    assigned += [[u, NEW, step] for u in canary]
    columns = ("user_id", "version", "first_exposure")
    warehouse.insert("assignments", assigned, column_names=columns)
    served = [(u, PREV) for u in stable] + [(u, NEW) for u in canary]
    rows = [
        _conversation(f"ret-{u}-c{i}", u, arm, step, problem=False, rev=1)
        for i, (u, arm) in enumerate(served)
    ]
    warehouse.insert("conversations", rows, column_names=COLUMNS["conversations"])
    settings = ComparisonSettings()
    check = health(warehouse, new=NEW, prev=PREV, split=0.25, since=step, settings=settings)
    assert check.healthy, check
    assert check.srm_p_value > 0.1
