"""The sample state machine, audit-log replay, labels, promotion policy and lineage."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from loraloop.events import Acceptance, RiskLevel
from loraloop.exceptions import LoraloopError
from loraloop.lifecycle import (
    DEFAULT_TAXONOMY,
    Action,
    ActorKind,
    CycleOutcome,
    Label,
    LineageError,
    PromotionPolicy,
    PromotionRule,
    Proposal,
    ReplayError,
    Role,
    SampleFacts,
    SampleStatus,
    Transition,
    TransitionRefused,
    build_transition,
    eligible_proposals,
    first_seen_version,
    replay_status,
    validate_transition,
)

S = SampleStatus
TIERS = (S.CANDIDATE_BASELINE, S.SECONDARY_BASELINE, S.CORE_BASELINE)

# The graph by hand (docs/architecture.md, docs/pool.md), independent of the module's table.
EXPECTED: dict[tuple[SampleStatus | None, SampleStatus], set[Role]] = {
    (None, S.CAPTURED): {Role.LABELLER, Role.APPROVER, Role.SYSTEM},
    (S.CAPTURED, S.PROBLEM): {Role.LABELLER, Role.APPROVER},
    (S.CAPTURED, S.REJECTED): {Role.LABELLER, Role.APPROVER},
    (S.PROBLEM, S.CANDIDATE_BASELINE): {Role.APPROVER},
    (S.CANDIDATE_BASELINE, S.SECONDARY_BASELINE): {Role.APPROVER},
    (S.SECONDARY_BASELINE, S.CORE_BASELINE): {Role.APPROVER},
    (S.PROBLEM, S.DOWNWEIGHTED): {Role.APPROVER, Role.SYSTEM},
    **{(tier, S.DEMOTED): {Role.APPROVER} for tier in TIERS},
    **{(tier, S.RETIRED): {Role.APPROVER} for tier in TIERS},
    **{(closed, S.PROBLEM): {Role.APPROVER} for closed in (S.REJECTED, S.DOWNWEIGHTED, S.DEMOTED)},
}
PROMOTIONS = {
    (S.PROBLEM, S.CANDIDATE_BASELINE),
    (S.CANDIDATE_BASELINE, S.SECONDARY_BASELINE),
    (S.SECONDARY_BASELINE, S.CORE_BASELINE),
}
SOURCES: list[SampleStatus | None] = [None, *SampleStatus]
MATRIX = list(itertools.product(SOURCES, list(SampleStatus), list(Role)))
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def kind_of(role: Role) -> ActorKind:
    return ActorKind.SYSTEM if role is Role.SYSTEM else ActorKind.HUMAN


def ident(case: Any) -> str:
    return str(case) if case is not None else "none"


# ---------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize(("current", "target", "role"), MATRIX, ids=ident)
def test_transition_matrix(current: SampleStatus | None, target: SampleStatus, role: Role) -> None:
    allowed = role in EXPECTED.get((current, target), set())
    if allowed:
        edge = validate_transition(
            current, target, role=role, actor_kind=kind_of(role), reason="checked by hand"
        )
        assert (edge.source, edge.target) == (current, target)
        return
    with pytest.raises(TransitionRefused) as refused:
        validate_transition(
            current, target, role=role, actor_kind=kind_of(role), reason="checked by hand"
        )
    expected_targets = {t for (src, t) in EXPECTED if src == current}
    assert set(refused.value.allowed) == expected_targets
    assert (refused.value.current, refused.value.target) == (current, target)


@pytest.mark.parametrize(("current", "target", "role"), MATRIX, ids=ident)
def test_proposal_matrix(current: SampleStatus | None, target: SampleStatus, role: Role) -> None:
    allowed = (current, target) in PROMOTIONS and role is not Role.ADMIN
    kwargs: dict[str, Any] = {"role": role, "actor_kind": kind_of(role), "proposal": True}
    if allowed:
        assert validate_transition(current, target, **kwargs).action is Action.PROMOTE
    else:
        with pytest.raises(TransitionRefused):
            validate_transition(current, target, **kwargs)


@pytest.mark.parametrize("role", list(Role))
def test_role_and_actor_kind_must_agree(role: Role) -> None:
    wrong = ActorKind.HUMAN if role is Role.SYSTEM else ActorKind.SYSTEM
    with pytest.raises(TransitionRefused, match="cannot be held by"):
        validate_transition(S.CAPTURED, S.PROBLEM, role=role, actor_kind=wrong)


def test_system_cannot_promote_even_as_approver_and_is_told_to_propose() -> None:
    with pytest.raises(TransitionRefused, match="needs role approver") as refused:
        validate_transition(
            S.PROBLEM, S.CANDIDATE_BASELINE, role=Role.SYSTEM, actor_kind=ActorKind.SYSTEM
        )
    assert "proposal=True" in str(refused.value)
    with pytest.raises(TransitionRefused, match="cannot be held by a system actor"):
        validate_transition(
            S.PROBLEM, S.CANDIDATE_BASELINE, role=Role.APPROVER, actor_kind=ActorKind.SYSTEM
        )


def test_admin_manages_users_not_samples() -> None:
    with pytest.raises(TransitionRefused, match="users and keys, not samples"):
        validate_transition(S.CAPTURED, S.PROBLEM, role=Role.ADMIN, actor_kind=ActorKind.HUMAN)


def test_refusal_names_the_allowed_moves_and_roles() -> None:
    with pytest.raises(TransitionRefused) as refused:
        validate_transition(
            S.CAPTURED, S.CORE_BASELINE, role=Role.APPROVER, actor_kind=ActorKind.HUMAN
        )
    message = str(refused.value)
    assert "not a move" in message
    assert "problem (label, by approver or labeller)" in message
    assert "rejected (reject, by approver or labeller)" in message
    assert isinstance(refused.value, LoraloopError)


def test_final_state_says_so() -> None:
    with pytest.raises(TransitionRefused, match="'retired' is final") as refused:
        validate_transition(S.RETIRED, S.PROBLEM, role=Role.APPROVER, actor_kind=ActorKind.HUMAN)
    assert refused.value.allowed == ()


@pytest.mark.parametrize(
    ("current", "target"),
    [
        *((tier, S.DEMOTED) for tier in TIERS),
        *((tier, S.RETIRED) for tier in TIERS),
        (S.DEMOTED, S.PROBLEM),
        (S.PROBLEM, S.DOWNWEIGHTED),
    ],
)
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_reason_required(current: SampleStatus, target: SampleStatus, reason: str | None) -> None:
    with pytest.raises(TransitionRefused, match="reason is required"):
        validate_transition(
            current, target, role=Role.APPROVER, actor_kind=ActorKind.HUMAN, reason=reason
        )


def test_promotion_needs_no_reason() -> None:
    edge = validate_transition(
        S.PROBLEM, S.CANDIDATE_BASELINE, role=Role.APPROVER, actor_kind=ActorKind.HUMAN
    )
    assert edge.action is Action.PROMOTE


# ---------------------------------------------------------------------------- records and replay


def row(
    seq: int,
    current: SampleStatus | None,
    target: SampleStatus,
    *,
    minutes: int | None = None,
    role: Role = Role.APPROVER,
    proposal: bool = False,
    sample_id: str = "s1",
) -> Transition:
    return build_transition(
        sample_id,
        current,
        target,
        actor="trainer" if role is Role.SYSTEM else "alice",
        role=role,
        actor_kind=kind_of(role),
        seq=seq,
        ts=T0 + timedelta(minutes=seq if minutes is None else minutes),
        reason="regressed in model_v7",
        proposal=proposal,
    )


def happy_log() -> list[Transition]:
    return [
        row(0, None, S.CAPTURED, role=Role.SYSTEM),
        row(1, S.CAPTURED, S.PROBLEM, role=Role.LABELLER),
        row(2, S.PROBLEM, S.CANDIDATE_BASELINE, role=Role.SYSTEM, proposal=True),
        row(3, S.PROBLEM, S.CANDIDATE_BASELINE),
        row(4, S.CANDIDATE_BASELINE, S.SECONDARY_BASELINE, role=Role.SYSTEM, proposal=True),
    ]


def test_build_transition_records_the_action() -> None:
    record = row(3, S.PROBLEM, S.CANDIDATE_BASELINE)
    assert record.action is Action.PROMOTE
    assert record.transition_id == "s1:3"
    assert record.ts.tzinfo is not None


def test_build_transition_refuses() -> None:
    with pytest.raises(TransitionRefused):
        row(3, S.PROBLEM, S.CANDIDATE_BASELINE, role=Role.LABELLER)


def test_transition_needs_an_aware_timestamp() -> None:
    with pytest.raises(ValidationError):
        Transition(
            sample_id="s1",
            seq=0,
            from_status=None,
            to_status=S.CAPTURED,
            action=Action.CAPTURE,
            actor="sampler",
            role=Role.SYSTEM,
            actor_kind=ActorKind.SYSTEM,
            ts=datetime(2025, 1, 1),  # noqa: DTZ001 - the naive timestamp under test
        )


def test_replay_follows_the_log_and_ignores_proposals() -> None:
    assert replay_status(happy_log()) is S.CANDIDATE_BASELINE


def test_replay_orders_by_ts_then_seq() -> None:
    log = happy_log()
    assert replay_status(reversed(log)) is S.CANDIDATE_BASELINE
    same_time = [t.model_copy(update={"ts": T0}) for t in log]
    assert replay_status(same_time[::-1]) is S.CANDIDATE_BASELINE


def test_proposals_do_not_move_a_sample() -> None:
    log = happy_log()[:3]
    assert replay_status(log) is S.PROBLEM


def test_replay_of_a_full_lifecycle() -> None:
    log = [
        row(0, None, S.CAPTURED, role=Role.SYSTEM),
        row(1, S.CAPTURED, S.PROBLEM, role=Role.LABELLER),
        row(2, S.PROBLEM, S.CANDIDATE_BASELINE),
        row(3, S.CANDIDATE_BASELINE, S.SECONDARY_BASELINE),
        row(4, S.SECONDARY_BASELINE, S.CORE_BASELINE),
        row(5, S.CORE_BASELINE, S.DEMOTED),
        row(6, S.DEMOTED, S.PROBLEM),
        row(7, S.PROBLEM, S.DOWNWEIGHTED, role=Role.SYSTEM),
    ]
    assert replay_status(log) is S.DOWNWEIGHTED


def test_replay_refuses_a_gap() -> None:
    log = happy_log()
    del log[1]
    with pytest.raises(ReplayError, match="missing or out of order"):
        replay_status(log)


def test_replay_refuses_a_log_without_capture() -> None:
    with pytest.raises(ReplayError, match="no capture"):
        replay_status([])
    with pytest.raises(ReplayError, match="no capture"):
        replay_status([row(0, S.PROBLEM, S.CANDIDATE_BASELINE, role=Role.SYSTEM, proposal=True)])


def test_replay_refuses_several_samples() -> None:
    log = [*happy_log(), row(9, None, S.CAPTURED, role=Role.SYSTEM, sample_id="s2")]
    with pytest.raises(ReplayError, match="one sample"):
        replay_status(log)


def test_replay_refuses_a_non_edge() -> None:
    forged = happy_log()[0].model_copy(update={"to_status": S.CORE_BASELINE})
    with pytest.raises(ReplayError, match="no edge"):
        replay_status([forged])


# ---------------------------------------------------------------------------- labels


def label(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "acceptance": "Reject",
        "problem_types": ["over_promise"],
        "risk_level": "high",
        "corrected_response": "我们不能保证百分之百退款，但可以为您申请。",
    }
    data.update(overrides)
    return data


def test_problem_label_moves_to_problem() -> None:
    parsed = Label.model_validate(label())
    assert parsed.acceptance is Acceptance.REJECT
    assert parsed.risk_level is RiskLevel.HIGH
    assert parsed.target_status is S.PROBLEM


def test_accept_label_rejects_the_sample() -> None:
    parsed = Label.model_validate(
        label(acceptance="Accept", problem_types=[], corrected_response=None, risk_level="low")
    )
    assert parsed.target_status is S.REJECTED


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"problem_types": ["made_up"]}, "unknown problem types"),
        ({"problem_types": []}, "at least one problem type"),
        ({"corrected_response": None}, "needs a corrected_response"),
        ({"corrected_response": "  "}, "blank"),
        ({"acceptance": "Risk", "corrected_response": None}, "needs a corrected_response"),
        ({"acceptance": "Accept"}, "Accept takes no"),
        ({"acceptance": "Accept", "problem_types": []}, "Accept takes no"),
        ({"acceptance": "Maybe"}, "acceptance"),
        ({"risk_level": "severe"}, "risk_level"),
        ({"extra": 1}, "extra"),
    ],
)
def test_label_refusals(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Label.model_validate(label(**overrides))


def test_label_taxonomy_is_configurable() -> None:
    taxonomy = {"rude_tone", "over_promise"}
    parsed = Label.model_validate(
        label(problem_types=["rude_tone", "over_promise", "rude_tone"]),
        context={"taxonomy": taxonomy},
    )
    assert parsed.problem_types == ("rude_tone", "over_promise")
    with pytest.raises(ValidationError, match="unknown problem types"):
        Label.model_validate(
            label(problem_types=["missing_knowledge"]), context={"taxonomy": taxonomy}
        )
    assert "missing_knowledge" in DEFAULT_TAXONOMY


# ---------------------------------------------------------------------------- promotion


def cycle(version: str, *, trained: bool = False, **verdicts: str) -> CycleOutcome:
    return CycleOutcome(version=version, trained_on_sample=trained, verdicts=verdicts)


def facts(
    status: SampleStatus, *cycles: CycleOutcome, types: tuple[str, ...] = ("over_promise",)
) -> SampleFacts:
    return SampleFacts(sample_id="s1", status=status, problem_types=types, cycles=cycles)


def moves(
    *sample_facts: SampleFacts, policy: PromotionPolicy | None = None
) -> list[tuple[str, str]]:
    return [(p.to_status, p.rule) for p in eligible_proposals(sample_facts, policy)]


def test_problem_solved_after_training_is_proposed_as_candidate() -> None:
    found = eligible_proposals(
        [facts(S.PROBLEM, cycle("v3", trained=True, over_promise="solved_candidate"))]
    )
    assert len(found) == 1
    assert found[0].to_status is S.CANDIDATE_BASELINE
    assert found[0].rule == "solved_after_training"
    assert found[0].evidence["solved_version"] == "v3"


@pytest.mark.parametrize(
    "cycles",
    [
        (),
        (cycle("v3", over_promise="solved_candidate"),),  # solved, but not trained on it
        (cycle("v3", trained=True, over_promise="inconclusive"),),
        (cycle("v3", trained=True),),  # not measured
        (  # the latest training on it did not hold
            cycle("v3", trained=True, over_promise="solved_candidate"),
            cycle("v4", trained=True, over_promise="inconclusive"),
        ),
        (  # solved, then regressed
            cycle("v3", trained=True, over_promise="solved_candidate"),
            cycle("v4", over_promise="regression"),
        ),
    ],
)
def test_problem_not_proposed_without_evidence(cycles: tuple[CycleOutcome, ...]) -> None:
    assert moves(facts(S.PROBLEM, *cycles)) == []


def test_every_problem_type_must_be_solved() -> None:
    types = ("over_promise", "missing_knowledge")
    half = cycle(
        "v3", trained=True, over_promise="solved_candidate", missing_knowledge="inconclusive"
    )
    both = cycle(
        "v3", trained=True, over_promise="solved_candidate", missing_knowledge="solved_candidate"
    )
    assert moves(facts(S.PROBLEM, half, types=types)) == []
    assert moves(facts(S.PROBLEM, both, types=types)) == [
        (S.CANDIDATE_BASELINE, "solved_after_training")
    ]


def test_candidate_held_two_cycles_is_proposed_as_secondary() -> None:
    one = facts(S.CANDIDATE_BASELINE, cycle("v4", over_promise="inconclusive"))
    two = facts(
        S.CANDIDATE_BASELINE,
        cycle("v4", over_promise="inconclusive"),
        cycle("v5", trained=True, over_promise="solved_candidate"),
    )
    assert moves(one) == []
    assert moves(two) == [(S.SECONDARY_BASELINE, "held_two_cycles")]
    assert eligible_proposals([two])[0].evidence["held_versions"] == ["v4", "v5"]


def test_unmeasured_cycle_does_not_count_and_regression_blocks() -> None:
    unmeasured = facts(S.CANDIDATE_BASELINE, cycle("v4", over_promise="inconclusive"), cycle("v5"))
    regressed = facts(
        S.CANDIDATE_BASELINE,
        cycle("v4", over_promise="inconclusive"),
        cycle("v5", over_promise="regression"),
        cycle("v6", over_promise="inconclusive"),
    )
    assert moves(unmeasured) == []
    assert moves(regressed) == []


def test_secondary_held_three_cycles_is_proposed_as_core() -> None:
    held = [cycle(f"v{i}", over_promise="inconclusive") for i in range(4, 7)]
    assert moves(facts(S.SECONDARY_BASELINE, *held[:2])) == []
    assert moves(facts(S.SECONDARY_BASELINE, *held)) == [(S.CORE_BASELINE, "held_three_cycles")]


@pytest.mark.parametrize(
    "status",
    [s for s in SampleStatus if s not in {S.PROBLEM, S.CANDIDATE_BASELINE, S.SECONDARY_BASELINE}],
)
def test_other_statuses_get_no_proposal(status: SampleStatus) -> None:
    held = [cycle(f"v{i}", trained=True, over_promise="solved_candidate") for i in range(5)]
    assert moves(facts(status, *held)) == []


def test_sample_without_problem_types_gets_no_proposal() -> None:
    assert moves(facts(S.PROBLEM, cycle("v3", trained=True), types=())) == []


def test_policy_is_configurable() -> None:
    policy = PromotionPolicy(
        rules=(
            PromotionRule(
                name="fast_track",
                from_status=S.CANDIDATE_BASELINE,
                to_status=S.SECONDARY_BASELINE,
                min_cycles_held=1,
                max_regressions=1,
            ),
        ),
        regression_verdicts=frozenset({"worse"}),
    )
    sample = facts(
        S.CANDIDATE_BASELINE, cycle("v4", over_promise="worse"), cycle("v5", over_promise="ok")
    )
    assert moves(sample, policy=policy) == [(S.SECONDARY_BASELINE, "fast_track")]
    assert (
        moves(
            facts(S.PROBLEM, cycle("v3", trained=True, over_promise="solved_candidate")),
            policy=policy,
        )
        == []
    )


@pytest.mark.parametrize(
    ("source", "target"),
    [(S.PROBLEM, S.DOWNWEIGHTED), (S.CORE_BASELINE, S.RETIRED), (S.PROBLEM, S.CORE_BASELINE)],
)
def test_rules_only_propose_baseline_moves(source: SampleStatus, target: SampleStatus) -> None:
    with pytest.raises(ValidationError, match="not proposable"):
        PromotionRule(name="bad", from_status=source, to_status=target)


def test_proposals_over_many_samples_keep_input_order() -> None:
    solved = cycle("v3", trained=True, over_promise="solved_candidate")
    a = facts(S.PROBLEM, solved).model_copy(update={"sample_id": "a"})
    b = facts(S.PROBLEM).model_copy(update={"sample_id": "b"})
    c = facts(S.PROBLEM, solved).model_copy(update={"sample_id": "c"})
    assert [p.sample_id for p in eligible_proposals([a, b, c])] == ["a", "c"]


def test_proposal_becomes_an_audit_row_that_moves_nothing() -> None:
    proposal = Proposal(
        sample_id="s1",
        from_status=S.PROBLEM,
        to_status=S.CANDIDATE_BASELINE,
        rule="solved_after_training",
        evidence={"solved_version": "v3"},
    )
    record = proposal.to_transition(actor="trainer", seq=2, ts=T0 + timedelta(minutes=2))
    assert record.proposal
    assert record.role is Role.SYSTEM
    assert record.evidence == {"rule": "solved_after_training", "solved_version": "v3"}
    assert replay_status([*happy_log()[:2], record]) is S.PROBLEM


# ---------------------------------------------------------------------------- lineage

LINEAGE: dict[str, str | None] = {
    "v0": None,
    "v1": "v0",
    "v2": "v1",
    "v3": "v2",
    "v2b": "v1",  # a branch: retrained from v1 after v2 was rolled back
    "v3b": "v2b",
}


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (set(), None),
        ({"v3"}, "v3"),
        ({"v2", "v3"}, "v2"),
        ({"v1", "v3", "v3b"}, "v1"),
        ({"v3", "v3b"}, "v3"),  # both depth 3: by name
        ({"v3", "v2b"}, "v2b"),  # the one nearer its root
        ({"v0", "unknown"}, "unknown"),  # an unknown version is a root; tie broken by name
    ],
)
def test_first_seen_version(observed: set[str], expected: str | None) -> None:
    assert first_seen_version(observed, LINEAGE) == expected


def test_lineage_cycle_is_refused() -> None:
    with pytest.raises(LineageError, match="own ancestor"):
        first_seen_version({"a"}, {"a": "b", "b": "a"})
    with pytest.raises(LineageError):
        first_seen_version({"a"}, {"a": "a"})
