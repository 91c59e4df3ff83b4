"""The sample lifecycle: states, who may move a sample, labels and promotion proposals.

Pure: no I/O. The graph (docs/architecture.md, "Sample lifecycle"; docs/pool.md)::

    (none) ─capture─► captured ─label─► problem ─promote*─► candidate_baseline
                         │ reject          │ downweight            │ promote*
                         ▼                 ▼                       ▼
                      rejected        downweighted         secondary_baseline
                                                                   │ promote*
                                                                   ▼
                                                             core_baseline
    any baseline tier ─demote / retire (with a reason)─► demoted / retired (final)
    rejected | downweighted | demoted ─reopen (with a reason)─► problem

    * performed only by an approver (a person); automatic actors may propose it

Roles:

- ``labeller`` labels (captured → problem) and rejects (captured → rejected).
- ``approver`` does what a labeller does and performs every move into, within and
  out of the baseline tiers, down-weighting and reopening.
- ``admin`` manages users and API keys and nothing about samples: separation of
  duties, so that owning the console does not also mean owning the training data.
  A person who needs both holds both roles and acts under one at a time.
- ``system`` is the role of automatic actors (the sampler, the trainer). They
  capture, down-weight unsolved problems and *propose* moves into baseline tiers;
  a proposal is recorded (``proposal=True``) and never changes the state.

Human roles are only held by humans and ``system`` only by automatic actors, so a
service account can never be given ``approver`` to promote by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loraloop.events import Acceptance, Id, ProblemType, RiskLevel, Text
from loraloop.exceptions import LoraloopError

# ---------------------------------------------------------------------------- enums


class SampleStatus(StrEnum):
    """Where a sample is in the pool."""

    CAPTURED = "captured"
    PROBLEM = "problem"
    REJECTED = "rejected"
    DOWNWEIGHTED = "downweighted"
    CANDIDATE_BASELINE = "candidate_baseline"
    SECONDARY_BASELINE = "secondary_baseline"
    CORE_BASELINE = "core_baseline"
    DEMOTED = "demoted"
    RETIRED = "retired"


BASELINE_TIERS: Final = frozenset(
    {
        SampleStatus.CANDIDATE_BASELINE,
        SampleStatus.SECONDARY_BASELINE,
        SampleStatus.CORE_BASELINE,
    }
)
"""The statuses every later training cycle trains on as baseline."""


class Role(StrEnum):
    """What an actor is allowed to do (see the module docstring)."""

    LABELLER = "labeller"
    APPROVER = "approver"
    ADMIN = "admin"
    SYSTEM = "system"


class ActorKind(StrEnum):
    """Whether a person or a program acts; ``system`` role and kind go together."""

    HUMAN = "human"
    SYSTEM = "system"


class Action(StrEnum):
    """The verb of a transition, as recorded in ``sample_transitions.action``."""

    CAPTURE = "capture"
    LABEL = "label"
    REJECT = "reject"
    PROMOTE = "promote"
    DOWNWEIGHT = "downweight"
    DEMOTE = "demote"
    RETIRE = "retire"
    REOPEN = "reopen"


# ---------------------------------------------------------------------------- errors


class LifecycleError(LoraloopError):
    """Root of the errors of this module."""


class TransitionRefused(LifecycleError):
    """A move is not in the graph, or the actor's role may not perform it.

    The message lists the moves allowed from the current status and who may make
    them; ``allowed`` holds the same targets for programs.
    """

    def __init__(
        self,
        message: str,
        *,
        current: SampleStatus | None,
        target: SampleStatus,
        allowed: tuple[SampleStatus, ...],
    ) -> None:
        super().__init__(message)
        self.current = current
        self.target = target
        self.allowed = allowed


class ReplayError(LifecycleError):
    """An audit log does not chain: fix or re-export the ``sample_transitions`` rows."""


class LineageError(LifecycleError):
    """Model version lineage has a cycle: check the registry's parent links."""


# ---------------------------------------------------------------------------- graph


@dataclass(frozen=True, slots=True)
class Edge:
    """One allowed move: its verb, the roles that perform it, and what it needs."""

    source: SampleStatus | None
    target: SampleStatus
    action: Action
    roles: frozenset[Role]
    proposable: bool = False
    needs_reason: bool = False

    def describe(self) -> str:
        who = " or ".join(sorted(self.roles))
        text = f"{self.target} ({self.action}, by {who}"
        if self.needs_reason:
            text += ", with a reason"
        if self.proposable:
            text += "; automatic actors may propose it"
        return text + ")"


_HUMANS: Final = frozenset({Role.LABELLER, Role.APPROVER})
_APPROVER: Final = frozenset({Role.APPROVER})
_APPROVER_OR_SYSTEM: Final = frozenset({Role.APPROVER, Role.SYSTEM})
_PROPOSERS: Final = frozenset({Role.SYSTEM, Role.LABELLER, Role.APPROVER})


_PROMOTION_LADDER: Final = (
    (SampleStatus.PROBLEM, SampleStatus.CANDIDATE_BASELINE),
    (SampleStatus.CANDIDATE_BASELINE, SampleStatus.SECONDARY_BASELINE),
    (SampleStatus.SECONDARY_BASELINE, SampleStatus.CORE_BASELINE),
)


def _edges() -> tuple[Edge, ...]:
    s = SampleStatus
    edges = [
        Edge(None, s.CAPTURED, Action.CAPTURE, _HUMANS | {Role.SYSTEM}),
        Edge(s.CAPTURED, s.PROBLEM, Action.LABEL, _HUMANS),
        Edge(s.CAPTURED, s.REJECTED, Action.REJECT, _HUMANS),
        *(
            Edge(lower, upper, Action.PROMOTE, _APPROVER, proposable=True)
            for lower, upper in _PROMOTION_LADDER
        ),
        Edge(s.PROBLEM, s.DOWNWEIGHTED, Action.DOWNWEIGHT, _APPROVER_OR_SYSTEM, needs_reason=True),
    ]
    for tier in sorted(BASELINE_TIERS):
        edges.append(Edge(tier, s.DEMOTED, Action.DEMOTE, _APPROVER, needs_reason=True))
        edges.append(Edge(tier, s.RETIRED, Action.RETIRE, _APPROVER, needs_reason=True))
    for closed in (s.REJECTED, s.DOWNWEIGHTED, s.DEMOTED):
        edges.append(Edge(closed, s.PROBLEM, Action.REOPEN, _APPROVER, needs_reason=True))
    return tuple(edges)


EDGES: Final[Mapping[tuple[SampleStatus | None, SampleStatus], Edge]] = {
    (e.source, e.target): e for e in _edges()
}
"""Every allowed move, keyed by (from, to); ``from`` is None for the capture."""


def allowed_moves(current: SampleStatus | None) -> tuple[Edge, ...]:
    """The edges leaving ``current``, in a stable order."""
    return tuple(e for (src, _), e in EDGES.items() if src == current)


def _refuse(message: str, current: SampleStatus | None, target: SampleStatus) -> TransitionRefused:
    moves = allowed_moves(current)
    where = "nothing (no sample yet)" if current is None else repr(str(current))
    if moves:
        listed = "; ".join(e.describe() for e in moves)
        message += f". From {where} the allowed moves are: {listed}"
    else:
        message += f". {where} is final: no move leaves it"
    allowed = tuple(e.target for e in moves)
    return TransitionRefused(message, current=current, target=target, allowed=allowed)


def _check_actor(role: Role, actor_kind: ActorKind) -> str | None:
    if (role is Role.SYSTEM) != (actor_kind is ActorKind.SYSTEM):
        return (
            f"role {role} cannot be held by a {actor_kind} actor; automatic actors act as "
            "'system', people as labeller, approver or admin"
        )
    if role is Role.ADMIN:
        return "role admin manages users and keys, not samples; act as labeller or approver"
    return None


def validate_transition(
    current: SampleStatus | None,
    target: SampleStatus,
    *,
    role: Role,
    actor_kind: ActorKind,
    reason: str | None = None,
    proposal: bool = False,
) -> Edge:
    """Return the edge for ``current → target`` or raise :class:`TransitionRefused`.

    A proposal needs a proposable edge (a move into a baseline tier) and a
    labeller, approver or system actor; it never needs the performing role.
    """
    label = f"{current or '(none)'} → {target}"
    edge = EDGES.get((current, target))
    if edge is None:
        msg = f"{label} is not a move of the sample graph"
        raise _refuse(msg, current, target)
    problem = _check_actor(role, actor_kind)
    if problem is None:
        problem = (
            _proposal_problem(edge, role) if proposal else _performer_problem(edge, role, reason)
        )
    if problem is not None:
        msg = f"{label} ({edge.action}) refused: {problem}"
        raise _refuse(msg, current, target)
    return edge


def _proposal_problem(edge: Edge, role: Role) -> str | None:
    if not edge.proposable:
        return "only moves into a baseline tier can be proposed"
    if role not in _PROPOSERS:
        return f"role {role} cannot propose"
    return None


def _performer_problem(edge: Edge, role: Role, reason: str | None) -> str | None:
    if role not in edge.roles:
        return _role_message(edge, role)
    if edge.needs_reason and not (reason and reason.strip()):
        return "a reason is required"
    return None


def _role_message(edge: Edge, role: Role) -> str:
    needed = " or ".join(sorted(edge.roles))
    if Role.SYSTEM not in edge.roles:
        needed += " (a person)"
    message = f"needs role {needed}, got role {role}"
    if edge.proposable and role in _PROPOSERS:
        message += "; record it as a proposal (proposal=True) for an approver to confirm"
    return message


# ---------------------------------------------------------------------------- audit log


class Transition(BaseModel):
    """One row of the ``sample_transitions`` audit log.

    ``seq`` orders rows that share a ``ts``; ``transition_id`` is the row's
    idempotency key. A proposal records a suggested move and changes nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_id: Id
    seq: int = Field(ge=0)
    from_status: SampleStatus | None
    to_status: SampleStatus
    action: Action
    actor: Id
    role: Role
    actor_kind: ActorKind
    reason: Text | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    ts: AwareDatetime
    proposal: bool = False

    @property
    def transition_id(self) -> str:
        return f"{self.sample_id}:{self.seq}"


def build_transition(
    sample_id: str,
    current: SampleStatus | None,
    target: SampleStatus,
    *,
    actor: str,
    role: Role,
    actor_kind: ActorKind,
    seq: int,
    ts: AwareDatetime,
    reason: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    proposal: bool = False,
) -> Transition:
    """Validate a move and return the audit row to write (raises :class:`TransitionRefused`)."""
    edge = validate_transition(
        current, target, role=role, actor_kind=actor_kind, reason=reason, proposal=proposal
    )
    return Transition(
        sample_id=sample_id,
        seq=seq,
        from_status=current,
        to_status=target,
        action=edge.action,
        actor=actor,
        role=role,
        actor_kind=actor_kind,
        reason=reason,
        evidence=dict(evidence or {}),
        ts=ts,
        proposal=proposal,
    )


def replay_status(transitions: Iterable[Transition]) -> SampleStatus:
    """The current status of one sample from its audit log alone.

    Rows are ordered by ``(ts, seq)``; proposals are skipped. Each move must
    start where the previous one ended and be an edge of the graph (roles are
    not re-checked: they were checked when written, under the rules of the day).
    Raises :class:`ReplayError` for a log of several samples, a gap, or no capture.
    """
    rows = sorted(transitions, key=lambda t: (t.ts, t.seq))
    if len({t.sample_id for t in rows}) > 1:
        msg = "replay_status takes the log of one sample; group rows by sample_id first"
        raise ReplayError(msg)
    state: SampleStatus | None = None
    for row in rows:
        if not row.proposal:
            state = _apply(state, row)
    if state is None:
        msg = "the log has no capture: a sample's first row must be (none) → captured"
        raise ReplayError(msg)
    return state


def _apply(state: SampleStatus | None, row: Transition) -> SampleStatus:
    if row.from_status != state:
        msg = (
            f"transition {row.transition_id} starts at {row.from_status} but the sample is "
            f"at {state or '(none)'}: a row is missing or out of order"
        )
        raise ReplayError(msg)
    if (row.from_status, row.to_status) not in EDGES:
        msg = f"transition {row.transition_id} ({row.from_status} → {row.to_status}) is no edge"
        raise ReplayError(msg)
    return row.to_status


# ---------------------------------------------------------------------------- labels

DEFAULT_TAXONOMY: Final = frozenset(
    {
        "wrong_objection_handling",
        "wrong_CTA_timing",
        "missing_knowledge",
        "over_promise",
        "policy_boundary_risk",
    }
)
"""Default problem types (docs/architecture.md); others: ``context={"taxonomy": ...}``."""

TAXONOMY_CONTEXT_KEY: Final = "taxonomy"


class Label(BaseModel):
    """A person's judgement of a captured sample.

    Validate with ``Label.model_validate(data, context={"taxonomy": types})`` to
    check problem types against a configured taxonomy (default
    :data:`DEFAULT_TAXONOMY`). Rules:

    - ``Accept`` (the capture was a false alarm): no problem types and no
      corrected response; the sample is rejected.
    - ``Risk`` / ``Reject``: at least one problem type (the anchor of every later
      comparison) and a non-blank ``corrected_response`` (the training target:
      a problem without one cannot be trained on); the sample becomes a problem.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    acceptance: Acceptance
    problem_types: tuple[ProblemType, ...] = ()
    risk_level: RiskLevel
    corrected_response: Text | None = None
    notes: Text | None = None

    @field_validator("problem_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        taxonomy = _taxonomy(info.context)
        unknown = [t for t in value if t not in taxonomy]
        if unknown:
            msg = f"unknown problem types {unknown}; the taxonomy has {sorted(taxonomy)}"
            raise ValueError(msg)
        return tuple(dict.fromkeys(value))

    @field_validator("corrected_response")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            msg = "corrected_response is blank: leave it out or write the corrected reply"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Label:
        if self.acceptance is Acceptance.ACCEPT:
            if self.problem_types or self.corrected_response is not None:
                msg = "Accept takes no problem_types or corrected_response: choose Risk instead"
                raise ValueError(msg)
            return self
        if not self.problem_types:
            msg = f"{self.acceptance} needs at least one problem type"
            raise ValueError(msg)
        if self.corrected_response is None:
            msg = f"{self.acceptance} needs a corrected_response (the training target)"
            raise ValueError(msg)
        return self

    @property
    def target_status(self) -> SampleStatus:
        """Where labelling moves a captured sample."""
        if self.acceptance is Acceptance.ACCEPT:
            return SampleStatus.REJECTED
        return SampleStatus.PROBLEM


def _taxonomy(context: Any) -> frozenset[str]:
    if isinstance(context, Mapping) and TAXONOMY_CONTEXT_KEY in context:
        return frozenset(context[TAXONOMY_CONTEXT_KEY])
    return DEFAULT_TAXONOMY


# ---------------------------------------------------------------------------- promotion


class CycleOutcome(BaseModel):
    """One released training cycle as seen by a sample: the verdict per problem type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Id
    trained_on_sample: bool
    verdicts: dict[str, str] = Field(default_factory=dict)


class SampleFacts(BaseModel):
    """What the policy needs to know about one sample.

    ``cycles`` are the released cycles since the sample entered ``status``,
    oldest first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_id: Id
    status: SampleStatus
    problem_types: tuple[ProblemType, ...]
    cycles: tuple[CycleOutcome, ...] = ()


class PromotionRule(BaseModel):
    """A move the metrics may propose, and the evidence it needs.

    ``needs_solved_training``: the latest cycle that trained on the sample got a
    solved verdict for every one of its problem types. ``min_cycles_held``:
    cycles since the status was entered (after that solved cycle, when required)
    in which every type was measured and none regressed. ``max_regressions``:
    cycles since the status was entered with a regression verdict, at most.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    from_status: SampleStatus
    to_status: SampleStatus
    needs_solved_training: bool = False
    min_cycles_held: int = Field(0, ge=0)
    max_regressions: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _proposable(self) -> PromotionRule:
        edge = EDGES.get((self.from_status, self.to_status))
        if edge is None or not edge.proposable:
            msg = f"rule {self.name}: {self.from_status} → {self.to_status} is not proposable"
            raise ValueError(msg)
        return self


DEFAULT_PROMOTION_RULES: Final = (
    PromotionRule(
        name="solved_after_training",
        from_status=SampleStatus.PROBLEM,
        to_status=SampleStatus.CANDIDATE_BASELINE,
        needs_solved_training=True,
    ),
    PromotionRule(
        name="held_two_cycles",
        from_status=SampleStatus.CANDIDATE_BASELINE,
        to_status=SampleStatus.SECONDARY_BASELINE,
        min_cycles_held=2,
    ),
    PromotionRule(
        name="held_three_cycles",
        from_status=SampleStatus.SECONDARY_BASELINE,
        to_status=SampleStatus.CORE_BASELINE,
        min_cycles_held=3,
    ),
)
"""problem → candidate when solved; → secondary after 2 held cycles; → core after 3."""


class PromotionPolicy(BaseModel):
    """The configurable rule table and the verdict names it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[PromotionRule, ...] = DEFAULT_PROMOTION_RULES
    solved_verdicts: frozenset[str] = frozenset({"solved_candidate"})
    regression_verdicts: frozenset[str] = frozenset({"regression"})


class Proposal(BaseModel):
    """A move the policy suggests; an approver performs it or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_id: Id
    from_status: SampleStatus
    to_status: SampleStatus
    rule: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    def to_transition(self, *, actor: str, seq: int, ts: AwareDatetime) -> Transition:
        """The audit row (``proposal=True``, role system) that records this proposal."""
        return build_transition(
            self.sample_id,
            self.from_status,
            self.to_status,
            actor=actor,
            role=Role.SYSTEM,
            actor_kind=ActorKind.SYSTEM,
            seq=seq,
            ts=ts,
            evidence={"rule": self.rule, **self.evidence},
            proposal=True,
        )


def eligible_proposals(
    sample_facts: Iterable[SampleFacts], policy: PromotionPolicy | None = None
) -> list[Proposal]:
    """Every (sample, rule) pair whose evidence is met, in input then rule order."""
    chosen = policy or PromotionPolicy()
    found: list[Proposal] = []
    for facts in sample_facts:
        for rule in chosen.rules:
            proposal = _evaluate(facts, rule, chosen)
            if proposal is not None:
                found.append(proposal)
    return found


def _evaluate(facts: SampleFacts, rule: PromotionRule, policy: PromotionPolicy) -> Proposal | None:
    if facts.status != rule.from_status or not facts.problem_types:
        return None
    regressed = [c.version for c in facts.cycles if _regressed(c, facts, policy)]
    if len(regressed) > rule.max_regressions:
        return None
    window = facts.cycles
    evidence: dict[str, Any] = {}
    if rule.needs_solved_training:
        solved_at = _solved_training_index(facts, policy)
        if solved_at is None:
            return None
        evidence["solved_version"] = facts.cycles[solved_at].version
        window = facts.cycles[solved_at + 1 :]
    held = [c.version for c in window if _held(c, facts, policy)]
    if len(held) < rule.min_cycles_held:
        return None
    evidence.update(held_versions=held, regressed_versions=regressed)
    return Proposal(
        sample_id=facts.sample_id,
        from_status=facts.status,
        to_status=rule.to_status,
        rule=rule.name,
        evidence=evidence,
    )


def _verdicts(cycle: CycleOutcome, facts: SampleFacts) -> list[str | None]:
    return [cycle.verdicts.get(t) for t in facts.problem_types]


def _regressed(cycle: CycleOutcome, facts: SampleFacts, policy: PromotionPolicy) -> bool:
    return any(v in policy.regression_verdicts for v in _verdicts(cycle, facts))


def _held(cycle: CycleOutcome, facts: SampleFacts, policy: PromotionPolicy) -> bool:
    verdicts = _verdicts(cycle, facts)
    return None not in verdicts and not _regressed(cycle, facts, policy)


def _solved_training_index(facts: SampleFacts, policy: PromotionPolicy) -> int | None:
    trained = [i for i, c in enumerate(facts.cycles) if c.trained_on_sample]
    if not trained:
        return None
    last = trained[-1]
    verdicts = _verdicts(facts.cycles[last], facts)
    return last if all(v in policy.solved_verdicts for v in verdicts) else None


# ---------------------------------------------------------------------------- lineage


def first_seen_version(
    observed_versions: set[str], lineage: Mapping[str, str | None]
) -> str | None:
    """The earliest observed version, following parent links.

    ``lineage`` maps a version to its parent (None for a root); a version it does
    not know counts as a root. The answer is an observed version none of whose
    ancestors was observed; between branches, the one nearest its root, then by
    name. None when nothing was observed. Raises :class:`LineageError` on a cycle.
    """
    earliest: list[tuple[int, str]] = []
    for version in observed_versions:
        ancestors = _ancestors(version, lineage)
        if observed_versions.isdisjoint(ancestors):
            earliest.append((len(ancestors), version))
    return min(earliest)[1] if earliest else None


def _ancestors(version: str, lineage: Mapping[str, str | None]) -> list[str]:
    chain: list[str] = []
    parent = lineage.get(version)
    while parent is not None:
        if parent == version or parent in chain:
            msg = f"version lineage loops through {parent!r}: a version is its own ancestor"
            raise LineageError(msg)
        chain.append(parent)
        parent = lineage.get(parent)
    return chain
