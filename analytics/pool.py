"""The sample pool over the warehouse: review queue, labelling, moves, proposals.

Synchronous functions taking a :class:`~analytics.warehouse.Warehouse` (async
callers wrap them in ``await warehouse.run(...)``). A sample's status lives in
the append-only ``sample_transitions`` log (see :mod:`analytics.pool_log`), its
label in ``sample_labels`` (latest revision wins); ``samples`` stays
capture-owned and is written here only by :func:`import_baseline` (the capture of a
conversation imported from a file). Every move is validated by
:mod:`loraloop.lifecycle` against the acting roles before anything is written.

Writes for one sample are serialised by the warehouse thread of the process
(one console process per warehouse); two processes racing on one sample would
write the same ``transition_id`` and one move would be lost.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from prometheus_client import Counter
from pydantic import ValidationError

from analytics import pool_queries as q
from analytics import snapshots
from analytics.first_seen import FirstSeen, first_seen_of
from analytics.pool_log import (
    TRANSITION_COLUMNS,
    LogState,
    capture_row,
    captured,
    evidence_json,
    read_state,
    read_states,
    transition_row,
)
from analytics.pool_models import (
    SampleDetail,
    SampleFilter,
    SamplePage,
    SampleSummary,
    TransitionView,
)
from analytics.proposals import withdrawn_proposal
from analytics.rows import COLUMNS, SAMPLE_COLUMNS, dead_letter_row
from analytics.snapshots import Snapshot
from analytics.warehouse import Warehouse
from loraloop.baseline import BaselineConversation
from loraloop.events import Acceptance, DeadLetter, QAVerdict, RiskLevel
from loraloop.exceptions import LoraloopError
from loraloop.lifecycle import (
    EDGES,
    Action,
    ActorKind,
    Label,
    Proposal,
    Role,
    SampleStatus,
    Transition,
    TransitionRefused,
    build_transition,
)
from loraloop.pii import mask_pii

logger = logging.getLogger(__name__)

SAMPLE_ID_PREFIX: Final = "smp-"
"""Capture names a sample ``smp-<conversation_id>`` (streams.rollup.sample_id_of)."""

QA_SOURCE: Final = "qa_event"
CONSOLE_SOURCE: Final = "console"

LABEL_COLUMNS: Final = (
    "sample_id", "revision", "acceptance", "problem_types", "risk_level", "corrected_response",
    "notes", "labelled_by", "role", "source", "ts", "first_seen_version",
)  # fmt: skip
FROZEN_LABEL_COLUMNS: Final = (*LABEL_COLUMNS, *snapshots.SNAPSHOT_COLUMNS)
"""A label row with the transcript snapshot it was written against (what the pool writes)."""

QA_REFUSED_TOPIC: Final = "pool.qa_verdicts"
"""``source_topic`` of the dead letter of a QA verdict the pool refused to apply."""
DEAD_LETTER_OFFSET_BYTES: Final = 7
"""Bytes of the verdict's SHA-256 that make its dead letter's offset (fits an Int64)."""
FOREIGN_SAMPLE: Final = "foreign_sample"

QA_VERDICTS_REFUSED = Counter(
    "loraloop_qa_verdicts_refused_total",
    "QA verdicts not applied (dead-lettered with the reason), by reason.",
    ["reason"],
)
EXPORT_REFUSED = Counter(
    "loraloop_export_refused_total",
    "Labelled samples left out of an export: their labelled transcript text no longer exists.",
    ["export"],
)

NEXT_TIER: Final = {
    SampleStatus.PROBLEM: SampleStatus.CANDIDATE_BASELINE,
    SampleStatus.CANDIDATE_BASELINE: SampleStatus.SECONDARY_BASELINE,
    SampleStatus.SECONDARY_BASELINE: SampleStatus.CORE_BASELINE,
}
"""Where an approval moves a sample."""

ROLE_ORDER: Final = (Role.LABELLER, Role.APPROVER, Role.SYSTEM, Role.ADMIN)
"""An actor with several roles acts under the least one that may make the move."""

LABEL_ACTIONS: Final = frozenset({Action.LABEL, Action.REJECT})
"""Moves made only by writing a label (:func:`label`), never by a bare :func:`transition`."""

TRAINABLE_TARGETS: Final = frozenset(
    {SampleStatus.PROBLEM, SampleStatus.CANDIDATE_BASELINE, SampleStatus.SECONDARY_BASELINE,
     SampleStatus.CORE_BASELINE}
)  # fmt: skip
"""Statuses a sample may only enter with a label that has problem types and a corrected
response (the training target): reopening and every promotion check it."""


# ---------------------------------------------------------------------------- errors


class PoolError(LoraloopError):
    """Root of the pool's errors."""


class SampleNotFound(PoolError):
    """No such sample: capture has not written it (check the id, ``smp-<conversation>``)."""


class ActionForbidden(PoolError):
    """The actor's roles may not make this move; the message says which role may."""


class ActionConflict(PoolError):
    """The move does not start at the sample's current status (it moved meanwhile?)."""


class InvalidAction(PoolError):
    """The request is incomplete: a label that does not validate, a missing reason."""


class StaleMove(ActionConflict):
    """The sample is no longer at the status the move expected (``from_status``).

    Someone moved it meanwhile (a second click, another approver): reload the
    sample and decide again from where it is now.
    """


class TranscriptChanged(ActionConflict):
    """The conversation changed after the sample was labelled: its label no longer says
    what the transcript is. Re-review it and relabel it before promoting it."""


class ProposalWithdrawn(ActionConflict):
    """The move's proposal was withdrawn (its version was rolled back): its evidence is gone.

    Re-review the sample; a person who still wants the move makes it with
    :func:`transition` and a reason of their own.
    """


# ---------------------------------------------------------------------------- reads


def list_samples(warehouse: Warehouse, filters: SampleFilter | None = None) -> SamplePage:
    """The review queue: a page of samples matching ``filters``, newest first.

    Each sample whose conversation changed after its latest label has ``needs_review``.
    """
    page = q.list_samples(warehouse, filters)
    drifted = snapshots.check(warehouse, {s.sample_id: s.conversation_id for s in page.items})
    if not drifted:
        return page
    items = tuple(_reviewed(s, drifted.get(s.sample_id)) for s in page.items)
    return page.model_copy(update={"items": items})


def _reviewed(item: SampleSummary, drift: snapshots.LabelDrift | None) -> SampleSummary:
    if drift is None:
        return item
    return item.model_copy(update={"needs_review": True, "review_reason": drift.drift.reason})


def needs_review(warehouse: Warehouse, sample_ids: Iterable[str]) -> dict[str, str]:
    """sample_id → why, for the given samples whose conversation changed after labelling."""
    ids = sorted(set(sample_ids))
    found = warehouse.query(
        "SELECT sample_id, any(conversation_id) FROM samples FINAL "
        "WHERE sample_id IN {ids:Array(String)} GROUP BY sample_id",
        {"ids": ids},
    ).result_rows
    drifted = snapshots.check(warehouse, {str(s): str(c) for s, c in found})
    return {sid: d.drift.reason for sid, d in sorted(drifted.items())}


def get_sample(warehouse: Warehouse, sample_id: str, *, reveal_pii: bool = False) -> SampleDetail:
    """One sample in full; texts are PII-masked unless ``reveal_pii``."""
    summary = q.summary(warehouse, sample_id)
    if summary is None:
        raise _not_found(sample_id)
    summary = _reviewed(
        summary, snapshots.check(warehouse, {sample_id: summary.conversation_id}).get(sample_id)
    )
    turns = q.transcript(warehouse, summary.conversation_id)
    human = [t.text for t in turns if t.role == "human_agent"]
    handed_off = q.handed_off(warehouse, summary.conversation_id) or bool(human)
    detail = SampleDetail(
        summary=summary,
        transcript=turns,
        signals=q.signals(warehouse, summary.conversation_id),
        label=q.latest_label(warehouse, sample_id),
        qa_verdicts=q.qa_verdicts(warehouse, summary.conversation_id),
        transitions=q.transitions(warehouse, sample_id),
        open_proposals=q.open_proposals(warehouse, sample_id=sample_id),
        handed_off=handed_off,
        prefill_corrected_response=human[-1] if handed_off and human else None,
        transcript_sha256=snapshots.take(warehouse, [summary.conversation_id])[
            summary.conversation_id
        ].sha256,
    )
    return detail if reveal_pii else detail.masked()


def approval_queue(warehouse: Warehouse, *, limit: int = 100) -> tuple[TransitionView, ...]:
    """Open proposals, newest first: each cites its rule and evidence.

    Declined and withdrawn proposals (a ``proposal_decisions`` row each) are not shown;
    :func:`analytics.proposals.pending_proposals` lists one version's.
    """
    return q.open_proposals(warehouse, limit=limit)


def export_samples(
    warehouse: Warehouse, filters: SampleFilter | None = None, *, reveal_pii: bool = False
) -> list[dict[str, Any]]:
    """Samples matching ``filters`` with label and transcript (chat format), for JSONL.

    Texts are PII-masked unless ``reveal_pii``. A labelled sample carries the transcript
    it was labelled on (``transcript_sha256`` names that snapshot): turns added after the
    label are left out, and a sample whose labelled text changed or is gone is left out
    of the export (logged, counted, and flagged for re-review; see
    :mod:`analytics.snapshots`).
    """
    page = q.list_samples(warehouse, filters)
    ids = [s.sample_id for s in page.items]
    conversations = [s.conversation_id for s in page.items]
    turns = q.transcripts(warehouse, conversations)
    labels = q.labels(warehouse, ids)
    frozen = snapshots.label_snapshots(warehouse, ids)
    current = snapshots.read_turns(warehouse, conversations) if frozen else {}
    text = (lambda t: t) if reveal_pii else mask_pii
    changed: list[snapshots.LabelDrift] = []
    out = []
    for item in page.items:
        label = labels.get(item.sample_id)
        record = item.model_dump(mode="json")
        record["corrected_response"] = text(label.corrected_response) if label else ""
        record["notes"] = text(label.notes) if label else ""
        messages = [(t.role, t.text) for t in turns.get(item.conversation_id, ())]
        if item.sample_id in frozen:
            revision, snapshot = frozen[item.sample_id]
            drift = snapshots.compare(snapshot, current.get(item.conversation_id, ()))
            if drift.changed:
                changed.append(
                    snapshots.LabelDrift(
                        item.sample_id, item.conversation_id, revision, snapshot, drift
                    )
                )
                record.update(needs_review=True, review_reason=drift.reason)
            if drift.frozen is None:
                EXPORT_REFUSED.labels("console").inc()
                logger.warning("export leaves %s out: %s", item.sample_id, drift.reason)
                continue
            record["transcript_sha256"] = snapshot.sha256
            messages = [(t.role, t.text) for t in drift.frozen]
        record["messages"] = [{"role": role, "content": text(body)} for role, body in messages]
        out.append(record)
    snapshots.flag(warehouse, changed)
    return out


# ---------------------------------------------------------------------------- writes


def label(
    warehouse: Warehouse,
    sample_id: str,
    data: Mapping[str, Any] | Label,
    *,
    actor: str,
    roles: Iterable[Role],
    taxonomy: Iterable[str],
    reason: str | None = None,
    now: datetime | None = None,
    transcript_sha256: str | None = None,
) -> Transition:
    """Label a sample: write the label revision and move captured → problem|rejected.

    ``data`` is validated as a :class:`~loraloop.lifecycle.Label` against
    ``taxonomy``; corrected response and notes are PII-masked before they are
    written (they become training data). An approver may relabel a closed sample
    (rejected, downweighted, demoted) as Risk or Reject with a ``reason``: that
    reopens it. The move is validated in full (actor, role, graph) before
    anything is written, so a refused move leaves no label behind.

    The label is frozen to the conversation's transcript as stored now (its
    snapshot, :mod:`analytics.snapshots`); ``transcript_sha256``, when given, is
    the snapshot the labeller saw, and a conversation that changed since is
    refused with :class:`TranscriptChanged`.
    """
    valid = validate_label(data, taxonomy)
    state = _state(warehouse, sample_id)
    chosen, kind = _choose_role(state.status, valid.target_status, roles, reason=reason)
    rows = _plan(sample_id, state, valid.target_status, actor, chosen, kind, reason=reason, now=now)
    snapshot = snapshots.take(warehouse, [state.conversation_id])[state.conversation_id]
    if transcript_sha256 is not None and transcript_sha256 != snapshot.sha256:
        msg = (
            f"{sample_id}: conversation {state.conversation_id} changed while it was being "
            f"reviewed (snapshot {transcript_sha256[:12]} was shown, it is "
            f"{snapshot.sha256[:12]} now): reload the sample and label what it says now"
        )
        raise TranscriptChanged(msg)
    _write_label(warehouse, sample_id, valid, actor=rows[-1].actor, role=chosen,
                 source=CONSOLE_SOURCE, snapshot=snapshot)  # fmt: skip
    return _commit(warehouse, rows)


def transition(
    warehouse: Warehouse,
    sample_id: str,
    target: SampleStatus,
    *,
    from_status: SampleStatus,
    actor: str,
    roles: Iterable[Role],
    reason: str | None = None,
    now: datetime | None = None,
) -> Transition:
    """A move of the graph (promote, demote, retire, downweight, reopen) by ``actor``.

    ``from_status`` is the status the caller saw: when the sample is elsewhere now
    the move is refused with :class:`StaleMove`. Labelling moves (captured →
    problem|rejected) are made by :func:`label` only; moves into ``problem`` or a
    baseline tier need a label with problem types and a corrected response. The
    audit row's evidence is built here, never taken from the caller.
    """
    return _transition(
        warehouse, sample_id, target, from_status=from_status, actor=actor, roles=roles,
        reason=reason, evidence=None, now=now,
    )  # fmt: skip


def _transition(
    warehouse: Warehouse,
    sample_id: str,
    target: SampleStatus,
    *,
    from_status: SampleStatus,
    actor: str,
    roles: Iterable[Role],
    reason: str | None,
    evidence: Mapping[str, Any] | None,
    now: datetime | None,
) -> Transition:
    state = _state(warehouse, sample_id)
    _expect(sample_id, state, from_status)
    edge = EDGES.get((state.status, target))
    if edge is not None and edge.action in LABEL_ACTIONS:
        msg = (
            f"{sample_id}: {state.status} → {target} ({edge.action}) is made by labelling, "
            f"not by a bare move: POST /api/samples/{sample_id}/label with acceptance and "
            "risk_level (Accept rejects it; Risk or Reject also need problem_types and a "
            "corrected_response)"
        )
        raise InvalidAction(msg)
    chosen, kind = _choose_role(state.status, target, roles, reason=reason)
    if target in TRAINABLE_TARGETS:
        revision = _require_trainable_label(warehouse, sample_id, state.status, target)
        frozen = _frozen_label(warehouse, sample_id, state, target, revision)
        evidence = {**(evidence or {}), **frozen}
    rows = _plan(
        sample_id, state, target, actor, chosen, kind, reason=reason, evidence=evidence, now=now
    )
    return _commit(warehouse, rows)


def approve(
    warehouse: Warehouse,
    sample_id: str,
    *,
    from_status: SampleStatus,
    actor: str,
    roles: Iterable[Role],
    reason: str | None = None,
    now: datetime | None = None,
) -> Transition:
    """Promote one tier up from ``from_status``; cites the open proposal for that move.

    ``from_status`` is the status the approver saw: a second click, or a second
    approver, finds the sample moved and is refused with :class:`StaleMove` (409)
    instead of promoting it again. Refused with :class:`ProposalWithdrawn` when the
    move has no open proposal and its latest one was withdrawn by a rollback (see
    :func:`analytics.proposals.withdraw_version`).
    """
    state = _state(warehouse, sample_id)
    _expect(sample_id, state, from_status)
    target = NEXT_TIER.get(state.status)
    if target is None:
        msg = (
            f"{sample_id} is {state.status}: only problem, candidate_baseline and "
            "secondary_baseline samples can be promoted"
        )
        raise ActionConflict(msg)
    evidence: dict[str, Any] = {}
    for proposal in q.open_proposals(warehouse, sample_id=sample_id):
        if proposal.to_status == target:
            evidence = {**proposal.evidence, "proposal_id": proposal.transition_id}
    if not evidence:
        withdrawn = withdrawn_proposal(warehouse, sample_id, state.status, target)
        if withdrawn is not None:
            msg = (
                f"{sample_id}: proposal {withdrawn.transition_id} ({state.status} → {target}) "
                f"was withdrawn ({withdrawn.reason}); its evidence no longer holds. Re-review "
                "the sample; to promote it on your own judgement, use a transition with a reason"
            )
            raise ProposalWithdrawn(msg)
    return _transition(
        warehouse, sample_id, target, from_status=from_status, actor=actor, roles=roles,
        reason=reason, evidence=evidence, now=now,
    )  # fmt: skip


def decline_proposals(
    warehouse: Warehouse,
    sample_id: str,
    *,
    actor: str,
    roles: Iterable[Role],
    reason: str,
    now: datetime | None = None,
) -> int:
    """An approver declines the sample's open proposals; returns how many. Nothing moves."""
    held = set(roles)
    if Role.APPROVER not in held or Role.SYSTEM in held:
        msg = f"declining a proposal needs role approver (a person); {actor} has {sorted(held)}"
        raise ActionForbidden(msg)
    if not reason.strip():
        msg = "declining a proposal needs a reason"
        raise InvalidAction(msg)
    _state(warehouse, sample_id)
    ts = now or datetime.now(UTC)
    rows = [
        [p.transition_id, sample_id, "declined", actor, Role.APPROVER.value, reason, ts]
        for p in q.open_proposals(warehouse, sample_id=sample_id)
    ]
    if not rows:
        msg = f"{sample_id} has no open proposal to decline"
        raise ActionConflict(msg)
    warehouse.insert(
        "proposal_decisions",
        rows,
        column_names=("transition_id", "sample_id", "decision", "actor", "role", "reason", "ts"),
    )
    return len(rows)


def propose(
    warehouse: Warehouse,
    sample_id: str,
    target: SampleStatus,
    *,
    actor: str,
    rule: str,
    evidence: Mapping[str, Any] | None = None,
    roles: Iterable[Role] = (Role.SYSTEM,),
    now: datetime | None = None,
) -> TransitionView:
    """Record a proposal (changes nothing); an identical open one is returned instead."""
    state = _state(warehouse, sample_id)
    for existing in q.open_proposals(warehouse, sample_id=sample_id):
        if existing.to_status == target and existing.rule == rule:
            return existing
    chosen, kind = _choose_role(state.status, target, roles, proposal=True)
    rows = _plan(
        sample_id, state, target, actor, chosen, kind, now=now,
        evidence={**(evidence or {}), "rule": rule}, proposal=True,
    )  # fmt: skip
    _commit(warehouse, rows)
    return q.transitions(warehouse, sample_id)[-1]


def record_proposals(
    warehouse: Warehouse, proposals: Iterable[Proposal], *, actor: str
) -> list[TransitionView]:
    """Write ``lifecycle.eligible_proposals`` results (the trainer after each cycle)."""
    return [
        propose(warehouse, p.sample_id, p.to_status, actor=actor, rule=p.rule, evidence=p.evidence)
        for p in proposals
    ]


def label_from_qa(warehouse: Warehouse, verdict: QAVerdict, *, taxonomy: Iterable[str]) -> bool:
    """Label the verdict's sample as its reviewer (see :func:`label_from_verdicts`)."""
    return label_from_verdicts(warehouse, [verdict], taxonomy=taxonomy)[0]


def label_from_verdicts(
    warehouse: Warehouse, verdicts: Sequence[QAVerdict], *, taxonomy: Iterable[str]
) -> list[bool]:
    """Label each verdict's sample as its reviewer (role labeller, source ``qa_event``).

    Idempotent: a move's ``transition_id`` is ``<sample_id>:qa-<event_id>`` and a
    verdict already applied is not applied again. Per verdict, in order: True when
    its label is in force (now or from an earlier delivery); False when the
    conversation has no sample (not sampled, or not written yet), the sample is no
    longer ``captured`` (labelled already: the first label stands) or the verdict
    is not a valid label (e.g. Risk without a corrected response). A verdict whose
    ``sample_id`` names a sample of another conversation labels nothing: it is
    logged, counted (``loraloop_qa_verdicts_refused_total``) and dead-lettered
    (``dead_letters``, source ``pool.qa_verdicts``) with the reason. A batch costs
    a handful of queries and a few inserts however many verdicts it holds.
    """
    allowed = frozenset(taxonomy)
    sample_ids = [v.sample_id or SAMPLE_ID_PREFIX + v.conversation_id for v in verdicts]
    stored = read_states(warehouse, sample_ids)
    states = dict(stored)  # moves this batch makes, so a second verdict sees the first
    accepted: list[tuple[QAVerdict, str, Label]] = []
    refused: list[DeadLetter] = []
    results = []
    for verdict, sample_id in zip(verdicts, sample_ids, strict=True):
        state = states.get(sample_id)
        if state is not None and state.conversation_id != verdict.conversation_id:
            refused.append(_foreign_verdict(verdict, sample_id, state.conversation_id))
            results.append(False)
            continue
        outcome = _qa_label(verdict, sample_id, state, allowed)
        results.append(outcome is not None)
        if isinstance(outcome, Label):
            state = states[sample_id]
            states[sample_id] = replace(
                state,
                status=outcome.target_status,
                transition_ids=state.transition_ids | {_qa_transition_id(sample_id, verdict)},
            )
            accepted.append((verdict, sample_id, outcome))
    if refused:
        warehouse.insert(
            "dead_letters",
            [dead_letter_row(letter) for letter in refused],
            column_names=COLUMNS["dead_letters"],
        )
    if accepted:
        _write_qa_labels(warehouse, accepted, stored)
    return results


def _foreign_verdict(verdict: QAVerdict, sample_id: str, owner: str) -> DeadLetter:
    """The dead letter of a verdict naming another conversation's sample (logged, counted)."""
    error = (
        f"QA verdict {verdict.event_id} is about conversation {verdict.conversation_id} but "
        f"names sample {sample_id} of conversation {owner}: not applied (a verdict labels "
        "only its own conversation's sample; send it again with that sample_id, or none)"
    )
    logger.warning("%s", error)
    QA_VERDICTS_REFUSED.labels(FOREIGN_SAMPLE).inc()
    raw = verdict.model_dump_json().encode()
    digest = hashlib.sha256(verdict.event_id.encode()).digest()
    return DeadLetter.of_payload(
        source_topic=QA_REFUSED_TOPIC,
        partition=0,
        offset=int.from_bytes(digest[:DEAD_LETTER_OFFSET_BYTES], "big"),
        raw=raw,
        error=error,
    )


def _qa_transition_id(sample_id: str, verdict: QAVerdict) -> str:
    return f"{sample_id}:qa-{verdict.event_id}"


def _qa_label(
    verdict: QAVerdict, sample_id: str, state: LogState | None, taxonomy: frozenset[str]
) -> Label | bool | None:
    """The label a verdict writes; True when applied before; None when it labels nothing."""
    if state is None:
        return None
    if _qa_transition_id(sample_id, verdict) in state.transition_ids:
        return True
    if state.status is not SampleStatus.CAPTURED:
        logger.info("QA verdict %s: %s is %s already", verdict.event_id, sample_id, state.status)
        return None
    data = verdict.model_dump(
        include={"acceptance", "problem_types", "risk_level", "corrected_response", "notes"}
    )
    try:
        return validate_label(data, taxonomy)
    except InvalidAction as e:
        logger.warning("QA verdict %s does not label %s: %s", verdict.event_id, sample_id, e)
        return None


def _write_qa_labels(
    warehouse: Warehouse,
    accepted: list[tuple[QAVerdict, str, Label]],
    states: dict[str, LogState],
) -> None:
    """Label rows, then the (capture and) label moves, for verdicts checked as valid."""
    ids = [sample_id for _, sample_id, _ in accepted]
    revisions = _label_revisions(warehouse, ids)
    frozen = snapshots.take(warehouse, {states[sid].conversation_id for sid in ids})
    first_seen = FirstSeen(warehouse, ids, (t for _, _, v in accepted for t in v.problem_types))
    labels, moves = [], []
    for verdict, sample_id, valid in accepted:
        row = label_row(
            sample_id, revisions.get(sample_id, 0) + 1, valid,
            actor=verdict.reviewer, role=Role.LABELLER, source=QA_SOURCE,
            first_seen=first_seen.of(sample_id, valid.problem_types),
        )  # fmt: skip
        labels.append(row + frozen[states[sample_id].conversation_id].row())
        state = states[sample_id]
        if not (state.has_capture or state.next_seq > 0):
            capture = capture_row(sample_id, state)
            moves.append(transition_row(capture))
            state = captured(state, capture)
        move = build_transition(
            sample_id, state.status, valid.target_status, actor=verdict.reviewer,
            role=Role.LABELLER, actor_kind=ActorKind.HUMAN, seq=state.next_seq,
            ts=state.next_ts(verdict.ts), evidence={"qa_event_id": verdict.event_id},
        )  # fmt: skip
        moves.append(transition_row(move, transition_id=_qa_transition_id(sample_id, verdict)))
        logger.info("%s: %s → %s by QA %s", sample_id, state.status, move.to_status, move.actor)
    warehouse.insert("sample_labels", labels, column_names=FROZEN_LABEL_COLUMNS)
    warehouse.insert("sample_transitions", moves, column_names=TRANSITION_COLUMNS)


# ---------------------------------------------------------------------------- import

IMPORT_SOURCE: Final = "import"
"""``sample_labels.source`` and ``samples.sampled_by`` of an imported baseline sample."""

IMPORT_RISK_LEVEL: Final = RiskLevel.LOW
"""The risk level of an imported baseline's label: an accepted answer, no incident."""


def import_reason(source: str) -> str:
    """The reason every audit row of an import carries: which file it came from."""
    return f"imported baseline ({source})"


@dataclass
class ImportOutcome:
    """What :func:`import_baseline` did with each conversation (by its position)."""

    imported: list[str] = field(default_factory=list)
    """Sample ids written now (or, for a dry run, that would be)."""
    already: list[str] = field(default_factory=list)
    """Sample ids an earlier import (or an earlier line of this batch) wrote."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(position in the batch, why) of each conversation that cannot be imported."""


@dataclass(frozen=True, slots=True)
class _Planned:
    sample_id: str
    conversation: BaselineConversation
    label: Label
    revision: int


def import_baseline(
    warehouse: Warehouse,
    conversations: Sequence[BaselineConversation],
    *,
    actor: str,
    roles: Iterable[Role],
    taxonomy: Iterable[str],
    source: str,
    skip_bad: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportOutcome:
    """Import an existing baseline: each conversation becomes a sample in its tier.

    Per conversation (``import-<id or content hash>``, sample ``smp-<that>``): its turns,
    a ``samples`` row (``sampled_by`` import), a label whose corrected response is the
    accepted answer (Risk, problem types as given, frozen to the transcript snapshot like
    every label) and the audit rows capture → label → promote … up to ``tier``, each by
    ``actor`` as approver with the reason ``imported baseline (<source>)``. So the trainer
    reads it exactly as a sample an approver promoted: context the messages before the
    answer, target the answer.

    Idempotent: a conversation already imported is counted in ``already`` and nothing is
    written for it; one whose id was imported with other messages is refused (give the
    corrected one a new id). A conversation is also refused when its problem types are
    missing or not in ``taxonomy``. Refusals raise :class:`InvalidAction` (nothing written)
    unless ``skip_bad``; ``dry_run`` checks everything and writes nothing. Only an approver
    (a person) may import: :class:`ActionForbidden` otherwise.

    The turns are stamped ``now``, so the raw-text TTL bounds their text like a captured
    conversation's: once it expired the trainer skips the sample (no context left).
    """
    held = set(roles)
    if Role.APPROVER not in held:
        msg = (
            f"importing a baseline needs role approver (a person): it moves samples into "
            f"baseline tiers; {actor} has {sorted(r.value for r in held)}. Use an approver's key"
        )
        raise ActionForbidden(msg)
    allowed = tuple(taxonomy)
    outcome = ImportOutcome()
    ids = [SAMPLE_ID_PREFIX + c.conversation_id for c in conversations]
    states = read_states(warehouse, ids)
    stored = snapshots.read_turns(warehouse, [states[s].conversation_id for s in states])
    revisions = _label_revisions(warehouse, [s for s in ids if s in states])
    planned: list[_Planned] = []
    seen: dict[str, BaselineConversation] = {}
    for index, (conversation, sample_id) in enumerate(zip(conversations, ids, strict=True)):
        state = states.get(sample_id)
        earlier = seen.get(sample_id)
        if earlier is not None or (state is not None and _imported(state)):
            before = (
                [snapshots.Turn("", i, m.role, m.content) for i, m in enumerate(earlier.messages)]
                if earlier is not None
                else stored.get(conversation.conversation_id, [])
            )
            problem = _other_content(conversation, before)
            if problem is None:
                outcome.already.append(sample_id)
            else:
                outcome.refused.append((index, problem))
            continue
        try:
            valid = _import_label(conversation, allowed, source)
        except InvalidAction as e:
            outcome.refused.append((index, str(e)))
            continue
        seen[sample_id] = conversation
        planned.append(_Planned(sample_id, conversation, valid, revisions.get(sample_id, 0) + 1))
        outcome.imported.append(sample_id)
    if outcome.refused and not skip_bad:
        listed = "; ".join(
            f"#{i} ({conversations[i].conversation_id}): {why}" for i, why in outcome.refused
        )
        msg = f"nothing imported: {len(outcome.refused)} conversation(s) refused: {listed}"
        raise InvalidAction(msg)
    if planned and not dry_run:
        _write_import(warehouse, planned, actor=actor, source=source, now=now)
    return outcome


def _imported(state: LogState) -> bool:
    """Whether an import (or anything) moved the sample already; a sample left at captured
    with no audit row is an import cut short, which is completed again."""
    return state.next_seq > 0 or state.status is not SampleStatus.CAPTURED


def _other_content(
    conversation: BaselineConversation, stored: Sequence[snapshots.Turn]
) -> str | None:
    """Why a conversation cannot be the one stored under its id, or None when it is.

    A stored text that expired (the raw-text TTL) is taken as matching: only its role
    is compared."""
    if conversation.id is None:
        return None  # named by its content's hash: the same name is the same content
    ordered = sorted(stored, key=lambda t: t.turn_index)
    same = len(ordered) == len(conversation.messages) and all(
        t.role == m.role and (not t.text or t.text == m.content)
        for t, m in zip(ordered, conversation.messages, strict=True)
    )
    if same:
        return None
    return (
        f"id {conversation.id!r} was imported before with other messages: give the corrected "
        "conversation a new id (and demote the old sample with a reason)"
    )


def _import_label(
    conversation: BaselineConversation, taxonomy: Sequence[str], source: str
) -> Label:
    if not conversation.problem_types:
        msg = (
            "problem_types: missing: a baseline sample needs at least one problem type it "
            f"guards against (one of {sorted(taxonomy)}); add problem_types to the line "
            "(`loraloop samples import --problem-type TYPE` sets it for lines without one)"
        )
        raise InvalidAction(msg)
    data = {
        "acceptance": Acceptance.RISK, "risk_level": IMPORT_RISK_LEVEL,
        "problem_types": list(conversation.problem_types),
        "corrected_response": conversation.answer, "notes": import_reason(source),
    }  # fmt: skip
    return validate_label(data, taxonomy)


def _import_ladder(tier: SampleStatus) -> list[SampleStatus]:
    """The statuses an imported sample passes through, capture to ``tier``."""
    ladder = [SampleStatus.CAPTURED, SampleStatus.PROBLEM]
    while ladder[-1] != tier:
        ladder.append(NEXT_TIER[ladder[-1]])
    return ladder


def _write_import(
    warehouse: Warehouse,
    planned: Sequence[_Planned],
    *,
    actor: str,
    source: str,
    now: datetime | None,
) -> None:
    """Turns, samples, labels, then the audit rows (last: the import's commit point)."""
    ts = now or datetime.now(UTC)
    reason = import_reason(source)
    first_seen = FirstSeen(
        warehouse,
        [p.sample_id for p in planned],
        (t for p in planned for t in p.label.problem_types),
    )
    turns: list[list[Any]] = []
    samples: list[list[Any]] = []
    labels: list[list[Any]] = []
    moves: list[list[Any]] = []
    for item in planned:
        cid = item.conversation.conversation_id
        stored = [
            snapshots.Turn(f"{cid}-t{i}", i, m.role, m.content)
            for i, m in enumerate(item.conversation.messages)
        ]
        turns += [
            [t.event_id, ts, cid, "", t.turn_index, t.role, t.text, "", False] for t in stored
        ]
        samples.append([
            item.sample_id, cid, "", SampleStatus.CAPTURED.value, [], [], 0.0, 1.0, "", "", ts,
            ts, 1, IMPORT_SOURCE,
        ])  # fmt: skip
        snapshot = Snapshot.of(stored, None)
        seen_in = first_seen.of(item.sample_id, item.label.problem_types)
        row = label_row(
            item.sample_id, item.revision, item.label, actor=actor, role=Role.APPROVER,
            source=IMPORT_SOURCE, first_seen=seen_in,
        )  # fmt: skip
        labels.append(row + snapshot.row())
        evidence = {
            "imported_from": source, "content_sha256": item.conversation.content_sha256(),
            "label_revision": item.revision, "transcript_sha256": snapshot.sha256,
        }  # fmt: skip
        ladder = _import_ladder(item.conversation.status)
        for seq, (before, after) in enumerate(zip([None, *ladder], ladder, strict=False)):
            move = build_transition(
                item.sample_id, before, after, actor=actor, role=Role.APPROVER,
                actor_kind=ActorKind.HUMAN, seq=seq, ts=ts, reason=reason, evidence=evidence,
            )  # fmt: skip
            moves.append(transition_row(move))
        logger.info("%s: imported into %s by %s (%s)", item.sample_id, ladder[-1], actor, source)
    warehouse.insert("turns", turns, column_names=COLUMNS["turns"])
    warehouse.insert("samples", samples, column_names=SAMPLE_COLUMNS)
    warehouse.insert("sample_labels", labels, column_names=FROZEN_LABEL_COLUMNS)
    warehouse.insert("sample_transitions", moves, column_names=TRANSITION_COLUMNS)


# ---------------------------------------------------------------------------- helpers


def validate_label(data: Mapping[str, Any] | Label, taxonomy: Iterable[str]) -> Label:
    """``data`` as a Label checked against ``taxonomy``; :class:`InvalidAction` if not."""
    raw = data.model_dump() if isinstance(data, Label) else dict(data)
    try:
        return Label.model_validate(raw, context={"taxonomy": frozenset(taxonomy)})
    except ValidationError as e:
        problems = "; ".join(_describe(x) for x in e.errors())
        msg = f"invalid label: {problems}"
        raise InvalidAction(msg) from e


def _describe(error: Any) -> str:
    where = ".".join(map(str, error["loc"])) or "label"
    return f"{where}: {error['msg']}"


def _not_found(sample_id: str) -> SampleNotFound:
    msg = f"no sample {sample_id!r}: capture has not written it (ids are smp-<conversation_id>)"
    return SampleNotFound(msg)


def _state(warehouse: Warehouse, sample_id: str) -> LogState:
    state = read_state(warehouse, sample_id)
    if state is None:
        raise _not_found(sample_id)
    return state


def _kind(role: Role) -> ActorKind:
    return ActorKind.SYSTEM if role is Role.SYSTEM else ActorKind.HUMAN


def _choose_role(
    current: SampleStatus,
    target: SampleStatus,
    roles: Iterable[Role],
    *,
    reason: str | None = None,
    proposal: bool = False,
) -> tuple[Role, ActorKind]:
    """The least role held that may make the move, or the refusal as a pool error."""
    held = [r for r in ROLE_ORDER if r in set(roles)] or [Role.ADMIN]
    refusal: TransitionRefused | None = None
    for role in held:
        try:
            build_transition(
                "check", current, target, actor="check", role=role, actor_kind=_kind(role),
                seq=0, ts=datetime.now(UTC), reason=reason, proposal=proposal,
            )  # fmt: skip
        except TransitionRefused as e:
            refusal = refusal or e
            continue
        return role, _kind(role)
    assert refusal is not None  # noqa: S101 (held is never empty)
    raise _classify(refusal, current, target, reason, proposal)


def _classify(
    refusal: TransitionRefused,
    current: SampleStatus,
    target: SampleStatus,
    reason: str | None,
    proposal: bool,
) -> PoolError:
    edge = EDGES.get((current, target))
    if edge is None or (proposal and not edge.proposable):
        return ActionConflict(str(refusal))
    if not proposal and edge.needs_reason and not (reason and reason.strip()):
        return InvalidAction(str(refusal))
    return ActionForbidden(str(refusal))


def _expect(sample_id: str, state: LogState, from_status: SampleStatus) -> None:
    """Refuse a move made from a status the sample has left (:class:`StaleMove`)."""
    if state.status is not SampleStatus(from_status):
        msg = (
            f"{sample_id} is {state.status} now, not {from_status} as the move expected: it "
            "was moved meanwhile (a second click or another reviewer; see its audit trail). "
            f"Reload it and, if the move still makes sense, send from_status={state.status}"
        )
        raise StaleMove(msg)


def _require_trainable_label(
    warehouse: Warehouse, sample_id: str, current: SampleStatus, target: SampleStatus
) -> int:
    """Refuse a move into problem or a baseline tier without a label to train on; returns
    the label's revision."""
    found = q.latest_label(warehouse, sample_id)
    if found is None:
        missing = "it has no label"
    else:
        gaps = [
            name
            for name, absent in (
                ("problem types", not found.problem_types),
                ("a corrected response", not found.corrected_response.strip()),
            )
            if absent
        ]
        if not gaps:
            return found.revision
        missing = (
            f"its label (revision {found.revision}, {found.acceptance}) has no "
            + " and no ".join(gaps)
        )
    msg = (
        f"{sample_id}: {current} → {target} needs a label with problem types and a corrected "
        f"response (the training target), but {missing}. Label it as Risk or Reject first "
        f"(POST /api/samples/{sample_id}/label; an approver relabelling a closed sample adds "
        "a reason, which reopens it)"
    )
    raise InvalidAction(msg)


def _frozen_label(
    warehouse: Warehouse, sample_id: str, state: LogState, target: SampleStatus, revision: int
) -> dict[str, Any]:
    """The evidence that freezes what a promotion approves (the label revision and its
    transcript snapshot); refused with :class:`TranscriptChanged` (and flagged for
    re-review) when the conversation changed after that label."""
    stored = snapshots.label_snapshots(warehouse, [sample_id]).get(sample_id)
    if stored is None:  # labelled before snapshots were taken: nothing to check
        return {"label_revision": revision}
    drifted = snapshots.check(
        warehouse, {sample_id: state.conversation_id}, snapshots={sample_id: stored}
    ).get(sample_id)
    if drifted is not None:
        snapshots.flag(warehouse, [drifted])
        msg = (
            f"{sample_id}: {state.status} → {target} refused: {drifted.drift.reason}. Label "
            f"revision {stored[0]} was written against another transcript: read the "
            "conversation again and relabel it (take the sample out first, e.g. demote or "
            "downweight it with a reason, then relabel it with a reason, which reopens it)"
        )
        raise TranscriptChanged(msg)
    return {"label_revision": stored[0], "transcript_sha256": stored[1].sha256}


def _plan(
    sample_id: str,
    state: LogState,
    target: SampleStatus,
    actor: str,
    role: Role,
    kind: ActorKind,
    *,
    reason: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    proposal: bool = False,
) -> list[Transition]:
    """The audit rows of one move (the backfilled capture first, if due), validated.

    Nothing is written: a refusal here (an actor name over the id limit, evidence
    that cannot be stored as JSON) leaves the warehouse as it was.
    """
    rows: list[Transition] = []
    if not (state.has_capture or state.next_seq > 0):
        capture = capture_row(sample_id, state)
        rows.append(capture)
        state = captured(state, capture)
    try:
        row = build_transition(
            sample_id, state.status, target, actor=actor, role=role, actor_kind=kind,
            seq=state.next_seq, ts=state.next_ts(now or datetime.now(UTC)), reason=reason,
            evidence=evidence, proposal=proposal,
        )  # fmt: skip
    except ValidationError as e:
        problems = "; ".join(_describe(x) for x in e.errors())
        msg = f"{sample_id}: the move cannot be recorded: {problems}"
        raise InvalidAction(msg) from e
    try:
        evidence_json(row.evidence)
    except (orjson.JSONEncodeError, TypeError) as e:
        msg = f"{sample_id}: the move's evidence cannot be stored as JSON ({e}): send less nesting"
        raise InvalidAction(msg) from e
    rows.append(row)
    return rows


def _commit(warehouse: Warehouse, rows: Sequence[Transition]) -> Transition:
    """Append the planned rows in one insert; returns the move (the last row)."""
    warehouse.insert(
        "sample_transitions", [transition_row(r) for r in rows], column_names=TRANSITION_COLUMNS
    )
    row = rows[-1]
    kind = "proposal" if row.proposal else "move"
    logger.info(
        "%s: %s %s → %s by %s (%s)", row.sample_id, kind, row.from_status, row.to_status,
        row.actor, row.role,
    )  # fmt: skip
    return row


def _write_label(
    warehouse: Warehouse,
    sample_id: str,
    valid: Label,
    *,
    actor: str,
    role: Role,
    source: str,
    snapshot: Snapshot,
) -> int:
    revision = _label_revisions(warehouse, [sample_id]).get(sample_id, 0) + 1
    first_seen = first_seen_of(warehouse, sample_id, valid.problem_types)
    row = label_row(
        sample_id, revision, valid, actor=actor, role=role, source=source, first_seen=first_seen
    )
    warehouse.insert("sample_labels", [row + snapshot.row()], column_names=FROZEN_LABEL_COLUMNS)
    return revision


def _label_revisions(warehouse: Warehouse, sample_ids: Sequence[str]) -> dict[str, int]:
    """The latest label revision of each sample that has one."""
    rows = warehouse.query(
        "SELECT sample_id, max(revision) FROM sample_labels "
        "WHERE sample_id IN {ids:Array(String)} GROUP BY sample_id",
        {"ids": sorted(set(sample_ids))},
    ).result_rows
    return {str(sid): int(revision) for sid, revision in rows}


def label_row(
    sample_id: str,
    revision: int,
    valid: Label,
    *,
    actor: str,
    role: Role,
    source: str,
    first_seen: str,
) -> list[Any]:
    """A ``sample_labels`` row (LABEL_COLUMNS order); free texts are PII-masked."""
    return [
        sample_id, revision, valid.acceptance.value, list(valid.problem_types),
        valid.risk_level.value, mask_pii(valid.corrected_response or ""),
        mask_pii(valid.notes or ""), actor, role.value, source, datetime.now(UTC), first_seen,
    ]  # fmt: skip


__all__ = [
    "ActionConflict",
    "ActionForbidden",
    "ImportOutcome",
    "InvalidAction",
    "PoolError",
    "ProposalWithdrawn",
    "SampleDetail",
    "SampleFilter",
    "SampleNotFound",
    "SamplePage",
    "StaleMove",
    "TranscriptChanged",
    "TransitionView",
    "approval_queue",
    "approve",
    "decline_proposals",
    "export_samples",
    "get_sample",
    "import_baseline",
    "label",
    "first_seen_of",
    "label_from_qa",
    "label_from_verdicts",
    "list_samples",
    "needs_review",
    "propose",
    "record_proposals",
    "transition",
]
