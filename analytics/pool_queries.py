"""Read side of the pool: the review queue, one sample in full, the approval queue.

Every statement is a constant with ``{name:Type}`` placeholders; filters only
choose among constant fragments, values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from analytics.pool_log import utc
from analytics.pool_models import (
    LabelView,
    QAView,
    SampleFilter,
    SamplePage,
    SampleSummary,
    SignalView,
    TransitionView,
    TurnView,
    parse_ref,
    sample_ref,
)
from analytics.warehouse import Warehouse
from loraloop.pii import mask_pii

SUMMARY_COLUMNS: Final = (
    "sample_id, conversation_id, user_id, status, status_changed_at, problem_types, detectors, "
    "risk_weight, inclusion_probability, sampled_by, model_version, acceptance, risk_level, "
    "labelled_by, created_at"
)

_FILTERS: Final[dict[str, str]] = {
    "status": "status = {status:String}",
    "problem_type": "has(problem_types, {problem_type:String})",
    "detector": "has(detectors, {detector:String})",
    "risk_level": "risk_level = {risk_level:String}",
    "risk_min": "risk_weight >= {risk_min:Float64}",
    "risk_max": "risk_weight <= {risk_max:Float64}",
    "model_version": "model_version = {model_version:String}",
    "search": (
        "(positionCaseInsensitiveUTF8(sample_id, {search:String}) > 0"
        " OR positionCaseInsensitiveUTF8(conversation_id, {search:String}) > 0"
        " OR positionCaseInsensitiveUTF8(corrected_response, {search:String}) > 0"
        " OR positionCaseInsensitiveUTF8(notes, {search:String}) > 0"
        " OR conversation_id IN (SELECT conversation_id FROM turns"
        " WHERE positionCaseInsensitiveUTF8(text, {search:String}) > 0))"
    ),
}
"""Filter field → constant SQL condition (its value is the parameter of the same name)."""

PII_LIKE_RE2: Final = r"[@＠+＋\[]|[0-9０-９]{3}"
"""Holds for every text ``mask_pii`` changes, and for every masked text (a token's ``[``).

Every finding of ``loraloop.pii`` has an ``@`` (e-mail), a ``+`` (international phone) or
three digits in a row (mobile, ID, card), ASCII or full-width. A text it does not match is
its own masked form; whether it matches is the same for a text and its masked form."""


def _candidate(column: str) -> str:
    """A field the masked search must look at: it holds the search as is, or may hold PII."""
    return (
        f"(positionCaseInsensitiveUTF8({column}, {{search:String}}) > 0"
        f" OR match({column}, {{pii_like:String}}))"
    )


MASKED_SEARCH_FIELDS: Final = ("sample_id", "conversation_id", "corrected_response", "notes")
"""Fields of the ``pool`` view the search looks at besides the transcript."""

MASKED_SEARCH_SELECT: Final = (
    "SELECT sample_id, conversation_id, "  # noqa: S608 (constant columns and fragments)
    + ", ".join(f"{f}, {_candidate(f)}" for f in MASKED_SEARCH_FIELDS)
    + " FROM pool"
)
"""Each searched field and whether it is a candidate."""

MASKED_SEARCH_CONDITION: Final = (
    "("  # noqa: S608 (constant columns and fragments)
    + " OR ".join(_candidate(f) for f in MASKED_SEARCH_FIELDS)
    + " OR conversation_id IN (SELECT conversation_id FROM turns FINAL WHERE "
    + _candidate("text")
    + "))"
)
"""Samples with a candidate field or a candidate turn."""

MASKED_TURNS_SELECT: Final = (
    "SELECT conversation_id, text FROM turns FINAL WHERE "  # noqa: S608 (constants)
    + _candidate("text")
    + " AND conversation_id IN (SELECT conversation_id FROM pool"
)
"""Candidate turn texts of the conversations of samples matching the other filters (the
``pool`` condition and ``)`` follow)."""

TRANSITION_SELECT: Final = (
    "SELECT transition_id, sample_id, seq, from_status, to_status, action, actor, role, "
    "actor_kind, reason, evidence, proposal, ts FROM sample_transitions FINAL "
)

OPEN_PROPOSALS_SQL: Final = (
    "SELECT p.transition_id, p.sample_id, p.seq, p.from_status, p.to_status, p.action, "
    "p.actor, p.role, p.actor_kind, p.reason, p.evidence, p.proposal, p.ts "
    "FROM (SELECT * FROM sample_transitions FINAL WHERE proposal) AS p "
    "INNER JOIN (SELECT sample_id, argMax(to_status, (ts, seq)) AS status, "
    "max((ts, seq)) AS last FROM sample_transitions FINAL WHERE NOT proposal "
    "GROUP BY sample_id) AS c ON c.sample_id = p.sample_id "
    "WHERE p.from_status = c.status AND (p.ts, p.seq) > c.last "
    "AND p.transition_id NOT IN (SELECT transition_id FROM proposal_decisions) "
    "AND (empty({sid:String}) OR p.sample_id = {sid:String}) "
    "ORDER BY p.ts DESC, p.seq DESC LIMIT 1 BY p.sample_id, p.to_status "
    "LIMIT {limit:UInt32}"
)
"""Open proposals: after the latest move, from the current status, not declined; the
newest per (sample, target)."""


def _where(filters: SampleFilter, *, skip: Iterable[str] = ()) -> tuple[str, dict[str, Any]]:
    conditions = []
    params: dict[str, Any] = {}
    skipped = frozenset(skip)
    for name, condition in _FILTERS.items():
        value = getattr(filters, name)
        if value is None or value == "" or name in skipped:
            continue
        conditions.append(condition)
        params[name] = value
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", params


def summary_of(row: Sequence[Any]) -> SampleSummary:
    fields = [f.strip() for f in SUMMARY_COLUMNS.split(",")]
    data = dict(zip(fields, row, strict=True))
    data["status_changed_at"] = utc(data["status_changed_at"])
    data["created_at"] = utc(data["created_at"])
    data["problem_types"] = tuple(data["problem_types"])
    data["detectors"] = tuple(data["detectors"])
    return SampleSummary(**data)


def _contains(text: str, needle: str) -> bool:
    return needle in text.lower()


def masked_search(warehouse: Warehouse, filters: SampleFilter) -> list[str]:
    """The ids of every sample matching ``filters`` whose *masked* texts contain the search.

    The warehouse returns candidates only: fields that contain the search as stored, or
    that may hold PII (:data:`PII_LIKE_RE2`); each candidate is masked with ``mask_pii``
    and checked here. A field that is no candidate is its own masked form and does not
    contain the search, so the result depends on the masked texts alone: probing the
    digits of a masked phone finds what searching for an absent string finds.
    """
    where, params = _where(filters, skip=("search",))
    params.update(search=filters.search or "", pii_like=PII_LIKE_RE2)
    joiner = " AND " if where else " WHERE "
    # Built only from constants: `where` from the fragments of _FILTERS; values are parameters.
    sql = MASKED_SEARCH_SELECT + where + joiner + MASKED_SEARCH_CONDITION
    rows = warehouse.query(sql + " ORDER BY created_at DESC, sample_id", params).result_rows
    needle = (filters.search or "").lower()
    found: set[str] = set()
    unmatched: dict[str, list[str]] = {}
    for sample_id, conversation_id, *fields in rows:
        pairs = zip(fields[::2], fields[1::2], strict=True)
        if any(ok and _contains(mask_pii(value or ""), needle) for value, ok in pairs):
            found.add(sample_id)
        else:
            unmatched.setdefault(conversation_id, []).append(sample_id)
    if unmatched:
        texts = warehouse.query(MASKED_TURNS_SELECT + where + ")", params).result_rows
        for conversation_id, text in texts:
            if conversation_id in unmatched and _contains(mask_pii(text), needle):
                found.update(unmatched.pop(conversation_id))
    return [r[0] for r in rows if r[0] in found]


def _masked_page(warehouse: Warehouse, filters: SampleFilter) -> SamplePage:
    matched = masked_search(warehouse, filters)
    chosen = matched[filters.offset : filters.offset + filters.limit]
    rows = warehouse.query(
        "SELECT " + SUMMARY_COLUMNS + " FROM pool WHERE sample_id IN {sids:Array(String)} "  # noqa: S608
        "ORDER BY created_at DESC, sample_id",
        {"sids": chosen},
    ).result_rows if chosen else []  # fmt: skip
    return SamplePage(
        items=tuple(summary_of(r) for r in rows),
        total=len(matched),
        limit=filters.limit,
        offset=filters.offset,
    )


def list_samples(warehouse: Warehouse, filters: SampleFilter | None = None) -> SamplePage:
    """A page of the pool matching ``filters``, newest first, and the total that match.

    Without ``filters.reveal_pii`` the search looks at masked texts and ids only
    (:func:`masked_search`); the page itself is returned unmasked (callers mask what
    they show: :meth:`SamplePage.masked`).
    """
    chosen = filters or SampleFilter()
    if chosen.search and not chosen.reveal_pii:
        return _masked_page(warehouse, chosen)
    where, params = _where(chosen)
    # `where` is built only from the constant fragments of _FILTERS; values are parameters.
    count_sql = "SELECT count() FROM pool" + where  # noqa: S608
    page_sql = (
        "SELECT " + SUMMARY_COLUMNS + " FROM pool" + where  # noqa: S608
        + " ORDER BY created_at DESC, sample_id LIMIT {limit:UInt32} OFFSET {offset:UInt32}"
    )  # fmt: skip
    total = warehouse.query(count_sql, params).result_rows[0][0]
    rows = warehouse.query(
        page_sql, {**params, "limit": chosen.limit, "offset": chosen.offset}
    ).result_rows
    return SamplePage(
        items=tuple(summary_of(r) for r in rows),
        total=int(total),
        limit=chosen.limit,
        offset=chosen.offset,
    )


REF_LOOKUP_SQL: Final = (
    "SELECT DISTINCT sample_id FROM samples "
    "WHERE substring(lower(hex(SHA256(concat({key:String}, sample_id)))), 1, {hex:UInt32}) "
    "= {digest:String}"
)
"""Samples whose keyed digest (``analytics.pool_models.ref_digest``) is the one given."""


def resolve_ref(warehouse: Warehouse, given: str, key: str) -> str | None:
    """The stored sample id that a reader without the PII permission names with ``given``.

    A reference (:func:`~analytics.pool_models.sample_ref`) is looked up by its digest; an
    id ``mask_pii`` leaves alone is itself. An id carrying PII in the clear is None (not
    found): such a reader cannot confirm a guessed phone or e-mail by asking for its sample.
    """
    if mask_pii(given) != given:
        return None
    parsed = parse_ref(given)
    if parsed is not None:
        _, digest = parsed
        rows = warehouse.query(
            REF_LOOKUP_SQL, {"key": key, "hex": len(digest), "digest": digest}
        ).result_rows
        for (sample_id,) in rows:
            if sample_ref(sample_id, key) == given:
                return str(sample_id)
    return given


def summary(warehouse: Warehouse, sample_id: str) -> SampleSummary | None:
    rows = warehouse.query(
        "SELECT " + SUMMARY_COLUMNS + " FROM pool WHERE sample_id = {sid:String} LIMIT 1",  # noqa: S608
        {"sid": sample_id},
    ).result_rows
    return summary_of(rows[0]) if rows else None


def transcript(warehouse: Warehouse, conversation_id: str) -> tuple[TurnView, ...]:
    rows = warehouse.query(
        "SELECT turn_index, role, text, ts, model_version FROM turns FINAL "
        "WHERE conversation_id = {cid:String} ORDER BY turn_index, ts",
        {"cid": conversation_id},
    ).result_rows
    return tuple(
        TurnView(turn_index=i, role=r, text=t, ts=utc(ts), model_version=v)
        for i, r, t, ts, v in rows
    )


def signals(warehouse: Warehouse, conversation_id: str) -> tuple[SignalView, ...]:
    rows = warehouse.query(
        "SELECT signal_id, detector, turn_index, risk_weight, evidence, ts FROM signals FINAL "
        "WHERE conversation_id = {cid:String} ORDER BY ts, signal_id",
        {"cid": conversation_id},
    ).result_rows
    return tuple(
        SignalView(signal_id=s, detector=d, turn_index=i, risk_weight=w, evidence=e, ts=utc(ts))
        for s, d, i, w, e, ts in rows
    )


def latest_label(warehouse: Warehouse, sample_id: str) -> LabelView | None:
    rows = warehouse.query(
        "SELECT revision, acceptance, problem_types, risk_level, corrected_response, notes, "
        "labelled_by, role, source, ts FROM sample_labels FINAL WHERE sample_id = {sid:String} "
        "ORDER BY revision DESC LIMIT 1",
        {"sid": sample_id},
    ).result_rows
    if not rows:
        return None
    rev, acc, types, level, corrected, notes, by, role, source, ts = rows[0]
    return LabelView(
        revision=rev,
        acceptance=acc,
        problem_types=tuple(types),
        risk_level=level,
        corrected_response=corrected,
        notes=notes,
        labelled_by=by,
        role=role,
        source=source,
        ts=utc(ts),
    )


def qa_verdicts(warehouse: Warehouse, conversation_id: str) -> tuple[QAView, ...]:
    rows = warehouse.query(
        "SELECT event_id, reviewer, acceptance, problem_types, risk_level, "
        "ifNull(corrected_response, ''), ifNull(notes, ''), ts FROM qa_verdicts FINAL "
        "WHERE conversation_id = {cid:String} ORDER BY ts",
        {"cid": conversation_id},
    ).result_rows
    return tuple(
        QAView(
            event_id=e,
            reviewer=r,
            acceptance=a,
            problem_types=tuple(p),
            risk_level=lv,
            corrected_response=c,
            notes=n,
            ts=utc(ts),
        )
        for e, r, a, p, lv, c, n, ts in rows
    )


def transition_of(row: Sequence[Any]) -> TransitionView:
    tid, sid, seq, src, dst, action, actor, role, kind, reason, evidence, proposal, ts = row
    return TransitionView(
        transition_id=tid,
        sample_id=sid,
        seq=seq,
        from_status=src,
        to_status=dst,
        action=action,
        actor=actor,
        role=role,
        actor_kind=kind,
        reason=reason,
        evidence=orjson.loads(evidence) if evidence else {},
        proposal=proposal,
        ts=utc(ts),
    )


def transitions(warehouse: Warehouse, sample_id: str) -> tuple[TransitionView, ...]:
    """The audit trail of one sample, oldest first, proposals included."""
    rows = warehouse.query(
        TRANSITION_SELECT + "WHERE sample_id = {sid:String} ORDER BY ts, seq",
        {"sid": sample_id},
    ).result_rows
    return tuple(transition_of(r) for r in rows)


def open_proposals(
    warehouse: Warehouse, *, sample_id: str = "", limit: int = 100
) -> tuple[TransitionView, ...]:
    """The approval queue (of one sample when ``sample_id`` is given), newest first."""
    rows = warehouse.query(OPEN_PROPOSALS_SQL, {"sid": sample_id, "limit": limit}).result_rows
    return tuple(transition_of(r) for r in rows)


def handed_off(warehouse: Warehouse, conversation_id: str) -> bool:
    rows = warehouse.query(
        "SELECT count() FROM handoffs WHERE conversation_id = {cid:String}",
        {"cid": conversation_id},
    ).result_rows
    return int(rows[0][0]) > 0


def transcripts(warehouse: Warehouse, conversation_ids: list[str]) -> dict[str, list[TurnView]]:
    """The transcripts of several conversations in one query."""
    rows = warehouse.query(
        "SELECT conversation_id, turn_index, role, text, ts, model_version FROM turns FINAL "
        "WHERE conversation_id IN {cids:Array(String)} ORDER BY conversation_id, turn_index, ts",
        {"cids": conversation_ids},
    ).result_rows
    found: dict[str, list[TurnView]] = {}
    for cid, i, r, t, ts, v in rows:
        turn = TurnView(turn_index=i, role=r, text=t, ts=utc(ts), model_version=v)
        found.setdefault(cid, []).append(turn)
    return found


def labels(warehouse: Warehouse, sample_ids: list[str]) -> dict[str, LabelView]:
    """The latest labels of several samples in one query."""
    rows = warehouse.query(
        "SELECT sample_id FROM sample_labels FINAL WHERE sample_id IN {sids:Array(String)}",
        {"sids": sample_ids},
    ).result_rows
    found = {}
    for (sid,) in rows:
        label = latest_label(warehouse, sid)
        if label is not None:
            found[sid] = label
    return found
