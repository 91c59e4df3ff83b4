"""Promotion proposals from a canary, and their withdrawal when it rolls back.

Design: Training cycle, step 8. A comparison calling a type ``solved_candidate`` is
evidence about the *type*; a sample is proposed ``problem → candidate_baseline`` only
when, besides, the new version was trained on it and its own prompt family is fixed on
unseen traffic (:func:`propose_solved`):

- the sample is in the version's ``trained_sample_ids`` (its dataset manifest);
- the sample's family (the manifest's ``families``: family id → normalized first-user
  prompts and sample ids) opened at least ``FamilyRule.min_conversations`` canary
  conversations served by the new version since its rollout started (first user turn
  normalized with :func:`trainer.families.normalize_prompt` ∈ the family's prompts;
  allowlisted testers left out);
- among those conversations the share with a labelled sample of one of the sample's
  problem types is at most ``FamilyRule.max_problem_rate``. An unlabelled conversation
  counts as clean, as it does for the comparison's reviewed rates.

Samples that do not qualify are held back, each with its reason
(:class:`HoldReason`): a later look, with more traffic, may propose them. Metrics only
propose (``proposal = true``, role system); an approver decides. A sample already
proposed from this version is skipped, so looking again writes nothing twice. Rows go
through ``analytics.pool_log`` (seq continues the sample's log, ts never goes back).

A rollback closes the version's books (:func:`withdraw_version`):

- every pending proposal citing the version gets a ``proposal_decisions`` row with
  decision ``withdrawn`` (the same table an approver's ``declined`` goes to, so the
  approval queue drops it and the decision stays in the audit trail with actor, role,
  reason and time) and a ``proposal_withdrawn`` :class:`~analytics.flags.SampleFlag`;
  ``analytics.pool.approve`` refuses a move whose only proposal was withdrawn;
- every move already made on the version's evidence (an approval citing it) gets a
  ``rereview`` flag. Nothing is demoted: a person decides.

Running it twice writes nothing new. Blocking; async callers go through ``Warehouse.run``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from analytics.flags import FlagKind, SampleFlag, read_flags, write_flags
from analytics.pool_log import TRANSITION_COLUMNS, transition_row, utc
from analytics.pool_models import TransitionView
from analytics.pool_queries import TRANSITION_SELECT, transition_of
from analytics.rate_queries import EPOCH
from loraloop.lifecycle import ActorKind, Role, SampleStatus, Transition, build_transition
from loraloop.pii import mask_pii
from trainer.families import normalize_prompt

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FAMILY_MAX_PROBLEM_RATE",
    "DEFAULT_FAMILY_MIN_CONVERSATIONS",
    "WITHDRAWN",
    "Family",
    "FamilyEvidence",
    "FamilyRule",
    "HoldReason",
    "ProposalOutcome",
    "Withdrawal",
    "WithdrawnProposal",
    "families_from_manifest",
    "family_evidence",
    "pending_proposals",
    "propose_solved",
    "withdraw_version",
    "withdrawn_proposal",
]

DEFAULT_FAMILY_MIN_CONVERSATIONS: Final = 3
"""Canary conversations a family must open before its samples may be proposed."""

DEFAULT_FAMILY_MAX_PROBLEM_RATE: Final = 0.1
"""Largest share of a family's canary conversations labelled with the sample's types."""

WITHDRAWN: Final = "withdrawn"
"""``proposal_decisions.decision`` of a proposal closed by its version's rollback."""

DECISION_COLUMNS: Final = (
    "transition_id", "sample_id", "decision", "actor", "role", "reason", "ts",
)  # fmt: skip


# ---------------------------------------------------------------------------- proposing


@dataclass(frozen=True, slots=True)
class FamilyRule:
    """When a family counts as fixed on unseen traffic (``RolloutSettings`` sets both)."""

    min_conversations: int = DEFAULT_FAMILY_MIN_CONVERSATIONS
    max_problem_rate: float = DEFAULT_FAMILY_MAX_PROBLEM_RATE


@dataclass(frozen=True, slots=True)
class Family:
    """One prompt family of a version's manifest: its normalized prompts and samples."""

    family_id: str
    prompts: frozenset[str]
    sample_ids: frozenset[str]


def families_from_manifest(families: Mapping[str, Mapping[str, Any]]) -> dict[str, Family]:
    """The manifest's ``families`` section as :class:`Family` objects, by id."""
    return {
        str(fid): Family(
            family_id=str(fid),
            prompts=frozenset(str(p) for p in data.get("prompts", ())),
            sample_ids=frozenset(str(s) for s in data.get("sample_ids", ())),
        )
        for fid, data in families.items()
    }


class HoldReason(StrEnum):
    """Why a problem sample of a solved type was not proposed (yet)."""

    NOT_TRAINED = "not_trained"
    """The version did not train on it (held out, evaluation, de-duplicated, newer)."""
    NO_FAMILY_EVIDENCE = "no_family_evidence"
    """The caller has no manifest families for the version: nothing can be proposed."""
    NO_FAMILY = "no_family"
    """Trained, but in no family of the manifest (an inconsistent manifest)."""
    TOO_FEW_CONVERSATIONS = "too_few_conversations"
    """Its family opened fewer canary conversations than the rule needs: not yet."""
    FAMILY_STILL_FAILING = "family_still_failing"
    """Its family's canary conversations still show its problem types too often."""


@dataclass(frozen=True, slots=True)
class FamilyEvidence:
    """A family's canary conversations on the new version, and their labelled types."""

    family_id: str
    conversations: int
    labelled_types: Mapping[str, int]
    """Problem type → conversations with a labelled sample of that type."""
    problem_types_per_conversation: tuple[frozenset[str], ...] = ()

    def problem_conversations(self, problem_types: Collection[str]) -> int:
        """Conversations with a labelled sample of any of ``problem_types``."""
        wanted = set(problem_types)
        return sum(1 for types in self.problem_types_per_conversation if types & wanted)


@dataclass(frozen=True, slots=True)
class ProposalOutcome:
    """What one look proposed and what it held back (sample ids per reason)."""

    written: tuple[Transition, ...] = ()
    held: Mapping[HoldReason, tuple[str, ...]] = field(default_factory=dict)
    families: Mapping[str, FamilyEvidence] = field(default_factory=dict)

    @property
    def held_count(self) -> int:
        return sum(len(ids) for ids in self.held.values())

    def summary(self) -> str:
        """One line: proposed, and held back by reason."""
        text = f"{len(self.written)} proposed"
        if self.held:
            parts = ", ".join(f"{reason}: {len(ids)}" for reason, ids in sorted(self.held.items()))
            text += f", {self.held_count} held back ({parts})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: proposed ids, held ids by reason, the families' numbers."""
        return {
            "proposed": sorted(t.sample_id for t in self.written),
            "held": {str(r): list(ids) for r, ids in sorted(self.held.items())},
            "families": {
                fid: {"conversations": e.conversations, "labelled_types": dict(e.labelled_types)}
                for fid, e in sorted(self.families.items())
            },
        }


_CANDIDATES_SQL = """
SELECT p.sample_id, p.problem_types,
    if({trained_ids_given:Bool}, has({trained_ids:Array(String)}, p.sample_id),
       has(p.trained_in_versions, {version:String})) AS trained,
    t.next_seq, t.last_ts
FROM pool AS p
LEFT JOIN (
    SELECT sample_id, max(seq) + 1 AS next_seq, max(ts) AS last_ts
    FROM sample_transitions FINAL GROUP BY sample_id
) AS t ON t.sample_id = p.sample_id
WHERE p.status = {status:String}
  AND hasAny(p.problem_types, {problem_types:Array(String)})
  AND p.sample_id NOT IN (
      SELECT sample_id FROM sample_transitions FINAL
      WHERE proposal AND to_status = {target:String} AND actor = {actor:String}
        AND JSONExtractString(evidence, 'version') = {version:String}
  )
ORDER BY p.sample_id
"""

_FIRST_USER_TURNS_SQL = """
SELECT conversation_id, argMin(text, turn_index)
FROM turns FINAL
WHERE role = 'user' AND conversation_id IN (
    SELECT conversation_id FROM conversations FINAL
    WHERE model_version = {version:String}
      AND first_ts >= {since:DateTime64(3, 'UTC')}
      AND NOT has({excluded:Array(String)}, user_id)
)
GROUP BY conversation_id
"""
"""The first user turn of every conversation the new version served since ``since``."""

_LABELLED_TYPES_SQL = """
SELECT s.conversation_id, l.problem_types
FROM (
    SELECT sample_id, conversation_id FROM samples FINAL
    WHERE conversation_id IN {conversation_ids:Array(String)}
) AS s
INNER JOIN (
    SELECT sample_id, argMax(problem_types, revision) AS problem_types FROM sample_labels
    WHERE sample_id IN (
        SELECT sample_id FROM samples FINAL
        WHERE conversation_id IN {conversation_ids:Array(String)}
    )
    GROUP BY sample_id
) AS l ON l.sample_id = s.sample_id
"""
"""The latest label's problem types of each conversation's sample (labelled ones only)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    sample_id: str
    problem_types: tuple[str, ...]
    trained: bool
    next_seq: int
    last_ts: datetime


def propose_solved(
    warehouse: Warehouse,
    *,
    version: str,
    verdicts: Mapping[str, Mapping[str, Any]],
    actor: str,
    ts: datetime,
    trained_sample_ids: Collection[str] | None = None,
    families: Mapping[str, Mapping[str, Any]] | None = None,
    since: datetime | None = None,
    excluded_users: Sequence[str] = (),
    rule: FamilyRule | None = None,
) -> ProposalOutcome:
    """Propose every trained problem sample of a solved type whose family is fixed.

    ``verdicts`` maps each solved type to its rendered metric result (the evidence).
    ``trained_sample_ids``: the samples the version was trained on (its manifest's
    ``trained_sample_ids``); None reads ``pool.trained_in_versions`` instead.
    ``families``: the manifest's ``families`` section; None proposes nothing (every
    candidate is held back as ``no_family_evidence``). ``since``: when the rollout
    started (None: all of the version's traffic). ``excluded_users``: the allowlisted
    testers. At most four queries: candidates, first user turns, labels, the insert.
    """
    chosen = rule or FamilyRule()
    solved = sorted(verdicts)
    held: dict[HoldReason, list[str]] = {}
    candidates = _candidates(warehouse, version, solved, actor, trained_sample_ids)
    trained = [c for c in candidates if c.trained]
    held_untrained = [c.sample_id for c in candidates if not c.trained]
    if held_untrained:
        held[HoldReason.NOT_TRAINED] = held_untrained
    if families is None:
        if trained:
            held[HoldReason.NO_FAMILY_EVIDENCE] = [c.sample_id for c in trained]
        return _finish(warehouse, version, [], held, {})
    by_id = families_from_manifest(families)
    family_of = {sid: f.family_id for f in by_id.values() for sid in f.sample_ids}
    wanted = sorted({family_of[c.sample_id] for c in trained if c.sample_id in family_of})
    evidence = (
        family_evidence(
            warehouse, version, [by_id[f] for f in wanted], since=since, excluded=excluded_users
        )
        if wanted
        else {}
    )
    written: list[Transition] = []
    for candidate in trained:
        family_id = family_of.get(candidate.sample_id)
        if family_id is None:
            held.setdefault(HoldReason.NO_FAMILY, []).append(candidate.sample_id)
            continue
        seen = evidence[family_id]
        problems = seen.problem_conversations(candidate.problem_types)
        share = problems / seen.conversations if seen.conversations else 1.0
        if seen.conversations < chosen.min_conversations:
            held.setdefault(HoldReason.TOO_FEW_CONVERSATIONS, []).append(candidate.sample_id)
            continue
        if share > chosen.max_problem_rate:
            held.setdefault(HoldReason.FAMILY_STILL_FAILING, []).append(candidate.sample_id)
            continue
        problem_type = next(t for t in solved if t in candidate.problem_types)
        family = {
            "id": family_id,
            "conversations": seen.conversations,
            "problem_conversations": problems,
            "problem_share": share,
            "problem_types": sorted(candidate.problem_types),
            "min_conversations": chosen.min_conversations,
            "max_problem_rate": chosen.max_problem_rate,
            "since": since.isoformat() if since else None,
        }
        written.append(
            build_transition(
                candidate.sample_id,
                SampleStatus.PROBLEM,
                SampleStatus.CANDIDATE_BASELINE,
                actor=actor,
                role=Role.SYSTEM,
                actor_kind=ActorKind.SYSTEM,
                seq=candidate.next_seq,
                ts=max(ts, candidate.last_ts),
                reason=f"{problem_type} solved by {version}; family {family_id} fixed",
                evidence={
                    "version": version,
                    "problem_type": problem_type,
                    **verdicts[problem_type],
                    "family": family,
                },
                proposal=True,
            )
        )
    return _finish(warehouse, version, written, held, evidence)


def _finish(
    warehouse: Warehouse,
    version: str,
    written: list[Transition],
    held: Mapping[HoldReason, list[str]],
    evidence: Mapping[str, FamilyEvidence],
) -> ProposalOutcome:
    if written:
        rows = [transition_row(t) for t in written]
        warehouse.insert("sample_transitions", rows, column_names=TRANSITION_COLUMNS)
    outcome = ProposalOutcome(
        tuple(written), {r: tuple(ids) for r, ids in held.items()}, dict(evidence)
    )
    logger.info("proposals of %s for candidate_baseline: %s", version, outcome.summary())
    return outcome


def _candidates(
    warehouse: Warehouse,
    version: str,
    problem_types: list[str],
    actor: str,
    trained_sample_ids: Collection[str] | None,
) -> list[_Candidate]:
    if not problem_types:
        return []
    result = warehouse.query(
        _CANDIDATES_SQL,
        {
            "status": SampleStatus.PROBLEM.value,
            "target": SampleStatus.CANDIDATE_BASELINE.value,
            "problem_types": problem_types,
            "version": version,
            "actor": actor,
            "trained_ids_given": trained_sample_ids is not None,
            "trained_ids": sorted(trained_sample_ids or ()),
        },
    )
    return [
        _Candidate(str(s), tuple(str(t) for t in types), bool(trained), int(seq), utc(last))
        for s, types, trained, seq, last in result.result_rows
    ]


def family_evidence(
    warehouse: Warehouse,
    version: str,
    families: Sequence[Family],
    *,
    since: datetime | None = None,
    excluded: Sequence[str] = (),
) -> dict[str, FamilyEvidence]:
    """Each family's canary conversations on ``version`` since ``since`` (two queries).

    A conversation belongs to the family whose prompts hold its normalized first user
    turn; its problem types are its sample's latest label's (none when not labelled).
    """
    owner: dict[str, str] = {}
    for family in sorted(families, key=lambda f: f.family_id):
        for prompt in family.prompts:
            owner.setdefault(prompt, family.family_id)
    params = {"version": version, "since": since or EPOCH, "excluded": list(excluded)}
    opened: dict[str, str] = {}
    for conversation_id, text in warehouse.query(_FIRST_USER_TURNS_SQL, params).result_rows:
        # the manifest's prompts were PII-masked before they were normalized
        family_id = owner.get(normalize_prompt(mask_pii(str(text))))
        if family_id is not None:
            opened[str(conversation_id)] = family_id
    labelled: dict[str, set[str]] = {}
    if opened:
        rows = warehouse.query(
            _LABELLED_TYPES_SQL, {"conversation_ids": sorted(opened)}
        ).result_rows
        for conversation_id, types in rows:
            labelled.setdefault(str(conversation_id), set()).update(str(t) for t in types)
    per_family: dict[str, list[frozenset[str]]] = {f.family_id: [] for f in families}
    for conversation_id, family_id in sorted(opened.items()):
        per_family[family_id].append(frozenset(labelled.get(conversation_id, ())))
    return {
        family_id: FamilyEvidence(
            family_id=family_id,
            conversations=len(seen),
            labelled_types=dict(sorted(Counter(t for types in seen for t in types).items())),
            problem_types_per_conversation=tuple(seen),
        )
        for family_id, seen in per_family.items()
    }


# ---------------------------------------------------------------------------- rollback

_CITES: Final = (
    "(JSONExtractString(evidence, 'version') = {version:String} "
    "OR JSONExtractString(evidence, 'solved_version') = {version:String} "
    "OR has(JSONExtract(evidence, 'held_versions', 'Array(String)'), {version:String}))"
)
"""An audit row made on ``version``'s evidence: a canary proposal (``version``) or a
lifecycle rule's (``solved_version``, ``held_versions``), or a move that cites one."""

_PENDING_SQL: Final = (
    "SELECT p.transition_id, p.sample_id, p.seq, p.from_status, p.to_status, "  # noqa: S608
    "p.action, p.actor, p.role, p.actor_kind, p.reason, p.evidence, p.proposal, p.ts "
    "FROM (SELECT * FROM sample_transitions FINAL WHERE proposal AND " + _CITES + ") AS p "
    "INNER JOIN (SELECT sample_id, argMax(to_status, (ts, seq)) AS status, "
    "max((ts, seq)) AS last FROM sample_transitions FINAL WHERE NOT proposal "
    "GROUP BY sample_id) AS c ON c.sample_id = p.sample_id "
    "WHERE p.from_status = c.status AND (p.ts, p.seq) > c.last "
    "AND p.transition_id NOT IN (SELECT transition_id FROM proposal_decisions) "
    "ORDER BY p.ts DESC, p.seq DESC"
)
"""Undecided proposals citing a version, made after their sample's latest move and from
its current status (the approval queue's rule, without its newest-per-target cut)."""

_APPROVALS_SQL: Final = TRANSITION_SELECT + "WHERE NOT proposal AND " + _CITES + " ORDER BY ts, seq"

_WITHDRAWN_SQL: Final = """
SELECT p.transition_id, d.reason, JSONExtractString(p.evidence, 'version')
FROM (
    SELECT transition_id, evidence, ts, seq FROM sample_transitions FINAL
    WHERE proposal AND sample_id = {sid:String}
      AND from_status = {from_status:String} AND to_status = {to_status:String}
) AS p
INNER JOIN (
    SELECT transition_id, reason FROM proposal_decisions FINAL
    WHERE sample_id = {sid:String} AND decision = {withdrawn:String}
) AS d ON d.transition_id = p.transition_id
WHERE (p.ts, p.seq) > (
    SELECT max((ts, seq)) FROM sample_transitions FINAL
    WHERE sample_id = {sid:String} AND NOT proposal
)
ORDER BY p.ts DESC, p.seq DESC
LIMIT 1
"""


def pending_proposals(warehouse: Warehouse, version: str) -> list[TransitionView]:
    """The open proposals made on ``version``'s evidence, newest first.

    Open as in the approval queue: not declined or withdrawn, newer than the sample's
    latest move and starting at its current status. After :func:`withdraw_version`
    of a rolled-back version this is empty.
    """
    rows = warehouse.query(_PENDING_SQL, {"version": version}).result_rows
    return [transition_of(r) for r in rows]


@dataclass(frozen=True, slots=True)
class WithdrawnProposal:
    """A proposal its version's rollback withdrew."""

    transition_id: str
    version: str
    reason: str


def withdrawn_proposal(
    warehouse: Warehouse, sample_id: str, from_status: SampleStatus, to_status: SampleStatus
) -> WithdrawnProposal | None:
    """The newest withdrawn proposal for this move since the sample's latest move."""
    rows = warehouse.query(
        _WITHDRAWN_SQL,
        {
            "sid": sample_id,
            "from_status": from_status.value,
            "to_status": to_status.value,
            "withdrawn": WITHDRAWN,
        },
    ).result_rows
    if not rows:
        return None
    transition_id, reason, version = rows[0]
    return WithdrawnProposal(str(transition_id), str(version), str(reason))


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """What a rollback's bookkeeping wrote: proposals withdrawn, samples to re-review."""

    version: str
    withdrawn: tuple[str, ...] = ()
    """Transition ids of the proposals withdrawn now."""
    rereview: tuple[str, ...] = ()
    """Samples flagged ``rereview`` now (an approval cited the version)."""

    def summary(self) -> str:
        return (
            f"{len(self.withdrawn)} proposals of {self.version} withdrawn, "
            f"{len(self.rereview)} approvals flagged for re-review"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"withdrawn": list(self.withdrawn), "rereview": list(self.rereview)}


def withdraw_version(
    warehouse: Warehouse, *, version: str, actor: str, reason: str, ts: datetime
) -> Withdrawal:
    """Close the books of a rolled-back ``version`` (idempotent; see the module doc).

    ``actor`` is the rollout's actor (role system); ``reason`` why it rolled back, kept
    in the withdrawal rows and the flags' evidence. The flags are written before the
    withdrawals, so a process stopped in between repeats them (same ``flag_id``) rather
    than losing them; a second run finds nothing pending and every approval flagged.
    """
    pending = pending_proposals(warehouse, version)
    approvals = [
        transition_of(r) for r in warehouse.query(_APPROVALS_SQL, {"version": version}).result_rows
    ]
    flagged = _flagged(warehouse, version, {a.sample_id for a in approvals})
    rereview = _rereview_flags(approvals, flagged, version, actor, reason, ts)
    withdrawn = [_withdrawn_flag(p, version, actor, reason, ts) for p in pending]
    write_flags(warehouse, [*withdrawn, *rereview])
    if pending:
        rows = [
            [p.transition_id, p.sample_id, WITHDRAWN, actor, Role.SYSTEM.value,
             f"{version} rolled back: {reason}", ts]
            for p in pending
        ]  # fmt: skip
        warehouse.insert("proposal_decisions", rows, column_names=DECISION_COLUMNS)
    outcome = Withdrawal(
        version,
        tuple(p.transition_id for p in pending),
        tuple(f.sample_id for f in rereview),
    )
    logger.info("rollback of %s: %s", version, outcome.summary())
    return outcome


def _flagged(warehouse: Warehouse, version: str, sample_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(sample_ids))
    if not ids:
        return set()
    flags = read_flags(warehouse, sample_ids=ids, kind=FlagKind.REREVIEW)
    return {f.sample_id for f in flags if f.version == version}


def _rereview_flags(
    approvals: Sequence[TransitionView],
    flagged: set[str],
    version: str,
    actor: str,
    reason: str,
    ts: datetime,
) -> list[SampleFlag]:
    by_sample: dict[str, list[TransitionView]] = {}
    for approval in approvals:
        if approval.sample_id not in flagged:
            by_sample.setdefault(approval.sample_id, []).append(approval)
    return [
        SampleFlag(
            sample_id=sample_id,
            kind=FlagKind.REREVIEW,
            reason=f"approved on the evidence of {version}, which was rolled back",
            actor=actor,
            ts=ts,
            version=version,
            evidence={
                "rollback_reason": reason,
                "transitions": [
                    {
                        "transition_id": m.transition_id,
                        "from_status": m.from_status,
                        "to_status": m.to_status,
                        "actor": m.actor,
                        "ts": m.ts.isoformat(),
                    }
                    for m in moves
                ],
            },
        )
        for sample_id, moves in sorted(by_sample.items())
    ]


def _withdrawn_flag(
    proposal: TransitionView, version: str, actor: str, reason: str, ts: datetime
) -> SampleFlag:
    return SampleFlag(
        sample_id=proposal.sample_id,
        kind=FlagKind.PROPOSAL_WITHDRAWN,
        reason=f"proposal {proposal.transition_id} withdrawn: {version} was rolled back",
        actor=actor,
        ts=ts,
        version=version,
        evidence={
            "proposal_id": proposal.transition_id,
            "from_status": proposal.from_status,
            "to_status": proposal.to_status,
            "rollback_reason": reason,
        },
    )
