"""The JSON API under ``/api/`` (``Authorization: Bearer <api key>``).

Every action is checked twice: the endpoint's role (reading the pool needs
labeller, approver or system; ``/propose`` system; ``/users`` admin) and the
lifecycle's rule for the move itself (a labeller cannot promote: 403).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

import orjson
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from analytics import pool, pool_queries, snapshots
from analytics.console.auth import Principal, key_principal
from analytics.console.context import ConsoleContext, context
from analytics.console.users import SAMPLE_ROLES
from analytics.pool_models import (
    SampleFilter,
    mask_record,
    ref_digest,
    ref_key,
    sample_ref,
    transition_ref,
)
from loraloop.baseline import BaselineConversation
from loraloop.events import Id
from loraloop.exceptions import LoraloopError
from loraloop.lifecycle import Role, SampleStatus, Transition
from loraloop.pii import mask_pii

T = TypeVar("T")

OK: Final = 200
SERVICE_UNAVAILABLE: Final = 503

router = APIRouter(prefix="/api")
Ctx = Annotated[ConsoleContext, Depends(context)]


async def api_principal(ctx: Ctx, authorization: Annotated[str, Header()] = "") -> Principal:
    """The caller of an API request, from its Bearer key."""
    return await ctx.warehouse.run(key_principal, ctx, authorization)


Caller = Annotated[Principal, Depends(api_principal)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReasonBody(_Body):
    reason: str | None = None


class ExpectedBody(_Body):
    """A move names the status its caller saw (``from_status``): a stale one is 409."""

    from_status: SampleStatus
    reason: str | None = None


class MoveBody(ExpectedBody):
    to_status: SampleStatus
    evidence: Any = None
    """Refused when given: the server builds a move's evidence."""


class ProposeBody(_Body):
    to_status: SampleStatus
    rule: str = Field(min_length=1)
    evidence: dict[str, Any] = Field(default_factory=dict)


MAX_IMPORT_CONVERSATIONS: Final = 500
"""Conversations in one ``POST /api/samples/import`` at most (the CLI sends batches);
the body is bounded in bytes as well, like every request (``max_body_bytes``)."""


class ImportBody(_Body):
    """A batch of baseline conversations (lines of a baseline file) to import."""

    source: Id
    """The file's name: every audit row's reason says ``imported baseline (<source>)``."""
    conversations: list[BaselineConversation] = Field(max_length=MAX_IMPORT_CONVERSATIONS)
    skip_bad: bool = False
    """Import the good conversations of a batch with refused ones (else nothing is written)."""
    dry_run: bool = False
    """Check everything, write nothing (the CLI checks a whole file before its first write)."""


class NewUserBody(_Body):
    username: str = Field(min_length=1)
    roles: list[str]
    pii: bool = False


def _filters(ctx: ConsoleContext, **given: Any) -> SampleFilter:
    limit = min(given.pop("limit") or ctx.settings.page_size, ctx.settings.max_page_size)
    return SampleFilter(limit=limit, **given)


def _moved(ctx: ConsoleContext, caller: Principal, row: Transition) -> dict[str, Any]:
    out = {**row.model_dump(mode="json"), "transition_id": row.transition_id}
    if not caller.user.pii:
        key = ref_key(ctx.session_secret)
        out["transition_id"] = transition_ref(row.transition_id, row.sample_id, key)
        out["sample_id"] = sample_ref(row.sample_id, key)
    return out


async def _run(
    ctx: ConsoleContext, caller: Principal, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """``fn`` on the warehouse thread; without the PII permission, errors come back masked
    (their messages name sample and conversation ids)."""
    try:
        return await ctx.warehouse.run(lambda: fn(*args, **kwargs))
    except LoraloopError as error:
        if not caller.user.pii:
            error.args = (mask_pii(str(error)),)
        raise


async def resolve_sample_id(ctx: ConsoleContext, caller: Principal, given: str) -> str:
    """The stored id of the sample ``given`` names (a reference for readers without PII)."""
    if caller.user.pii:
        return given
    found = await ctx.warehouse.run(
        pool_queries.resolve_ref, ctx.warehouse, given, ref_key(ctx.session_secret)
    )
    if found is None:
        msg = (
            f"no sample {mask_pii(given)!r}: without the PII permission a sample whose id "
            "holds personal data is named by the id the queue shows (masked, with ~digest)"
        )
        raise pool.SampleNotFound(msg)
    return found


TRANSCRIPT_CHANGED: Final = (
    "the conversation changed since you opened it; reload the sample and label what it "
    "says now (nothing was saved)"
)
"""What a label sent against an older transcript snapshot is told (409)."""


def shown_snapshot(
    ctx: ConsoleContext, caller: Principal, sample_id: str, given: str | None
) -> str | None:
    """The transcript snapshot (its SHA-256) a label was written against, as
    :func:`analytics.pool.label` compares it; blocking (run it on the warehouse thread).

    ``given`` is the ``transcript_sha256`` the sample was shown with (None: not sent, not
    checked). A reader without the PII permission is shown it keyed by the console
    (:meth:`~analytics.pool_models.SampleDetail.with_refs`), so it is matched against the
    key of the snapshot stored now: a match names that snapshot, and anything else is
    refused here, without the unkeyed hash in the message.
    """
    if given is None or caller.user.pii:
        return given
    found = pool_queries.summary(ctx.warehouse, sample_id)
    if found is None:
        return given  # the label then says the sample does not exist
    cid = found.conversation_id
    now = snapshots.take(ctx.warehouse, [cid])[cid].sha256
    if given == ref_digest(now, ref_key(ctx.session_secret)):
        return now
    raise pool.TranscriptChanged(TRANSCRIPT_CHANGED)


def snapshot_field(data: dict[str, Any]) -> str | None:
    """Pop the optional ``transcript_sha256`` of a label body (blank: not sent)."""
    given = data.pop("transcript_sha256", None)
    if given is None:
        return None
    if not isinstance(given, str):
        msg = "transcript_sha256 must be a string: the one GET /api/samples/{id} returned"
        raise pool.InvalidAction(msg)
    return given.strip() or None


def label_as(
    ctx: ConsoleContext,
    caller: Principal,
    sample_id: str,
    data: dict[str, Any],
    *,
    transcript_sha256: str | None,
    reason: str | None = None,
) -> Transition:
    """Label ``sample_id`` as ``caller`` (blocking): the API's and the label form's write.

    A ``transcript_sha256`` that no longer names the conversation's transcript is
    refused (:class:`~analytics.pool.TranscriptChanged`, 409) and nothing is written.
    """
    snapshot = shown_snapshot(ctx, caller, sample_id, transcript_sha256)
    try:
        return pool.label(
            ctx.warehouse, sample_id, data, actor=caller.user.username,
            roles=caller.user.roles, taxonomy=ctx.settings.taxonomy, reason=reason,
            transcript_sha256=snapshot,
        )  # fmt: skip
    except pool.TranscriptChanged as error:
        if caller.user.pii:
            raise
        raise pool.TranscriptChanged(TRANSCRIPT_CHANGED) from error


@router.get("/health")
async def health(ctx: Ctx) -> JSONResponse:
    """Liveness, warehouse reachability and serving; needs no key.

    503 with ``serving`` (the reason) while a replica cannot serve the rollout's adapters,
    so a load balancer or an operator's probe sees the held rollout.
    """
    await ctx.warehouse.run(ctx.warehouse.query, "SELECT 1")
    problem = ctx.serving_problem() if ctx.serving_problem is not None else None
    body = {"status": "degraded" if problem else "ok", "database": ctx.warehouse.database,
            "serving": problem}  # fmt: skip
    return JSONResponse(body, status_code=SERVICE_UNAVAILABLE if problem else OK)


@router.get("/samples")
async def list_samples(
    ctx: Ctx,
    caller: Caller,
    status: str | None = None,
    problem_type: str | None = None,
    detector: str | None = None,
    risk_level: str | None = None,
    risk_min: float | None = None,
    risk_max: float | None = None,
    model_version: str | None = None,
    search: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The review queue, filtered and paged; without the PII permission the search sees
    masked texts only and ``user_id`` / ``conversation_id`` are masked."""
    caller.require(*SAMPLE_ROLES)
    filters = _filters(
        ctx, status=status, problem_type=problem_type, detector=detector,
        risk_level=risk_level, risk_min=risk_min, risk_max=risk_max,
        model_version=model_version, search=search, limit=limit, offset=offset,
        reveal_pii=caller.user.pii,
    )  # fmt: skip
    page = await _run(ctx, caller, pool.list_samples, ctx.warehouse, filters)
    shown = page if caller.user.pii else page.masked(ref_key(ctx.session_secret))
    return shown.model_dump(mode="json")


@router.get("/samples/{sample_id}")
async def get_sample(sample_id: str, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """One sample in full; texts masked unless the caller has the PII permission."""
    caller.require(*SAMPLE_ROLES)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    detail = await _run(
        ctx, caller, pool.get_sample, ctx.warehouse, sid, reveal_pii=caller.user.pii
    )
    if not caller.user.pii:
        detail = detail.with_refs(ref_key(ctx.session_secret))
    return detail.model_dump(mode="json")


@router.post("/samples/{sample_id}/label")
async def label(sample_id: str, body: dict[str, Any], ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Label a sample (a :class:`~loraloop.lifecycle.Label` as JSON, plus an optional
    ``reason``: an approver relabelling a closed sample as Risk or Reject reopens it).

    An optional ``transcript_sha256`` (the one ``GET /api/samples/{id}`` returned) freezes
    the label to that transcript: a conversation that changed since is 409, nothing written.
    """
    data = dict(body)
    reason = data.pop("reason", None)
    if reason is not None and not isinstance(reason, str):
        msg = "reason must be a string"
        raise pool.InvalidAction(msg)
    shown = snapshot_field(data)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _run(
        ctx, caller, label_as, ctx, caller, sid, data, transcript_sha256=shown, reason=reason
    )
    return _moved(ctx, caller, row)


@router.post("/samples/{sample_id}/approve")
async def approve(sample_id: str, body: ExpectedBody, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Promote one tier up from ``from_status`` (approver); a stale ``from_status`` is 409."""
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _run(
        ctx, caller, pool.approve, ctx.warehouse, sid,
        from_status=body.from_status, actor=caller.user.username, roles=caller.user.roles,
        reason=body.reason,
    )  # fmt: skip
    return _moved(ctx, caller, row)


@router.post("/samples/{sample_id}/reject")
async def reject(sample_id: str, body: ReasonBody, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Decline the sample's open proposals (approver, with a reason); the sample stays."""
    sid = await resolve_sample_id(ctx, caller, sample_id)
    declined = await _run(
        ctx, caller, pool.decline_proposals, ctx.warehouse,
        sid, actor=caller.user.username,
        roles=caller.user.roles, reason=body.reason or "",
    )  # fmt: skip
    return {"sample_id": sample_id, "declined": declined}


@router.post("/samples/{sample_id}/demote")
async def demote(sample_id: str, body: ExpectedBody, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Take a baseline sample out (approver, with a reason and its ``from_status``)."""
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _run(
        ctx, caller, pool.transition, ctx.warehouse, sid,
        SampleStatus.DEMOTED, from_status=body.from_status, actor=caller.user.username,
        roles=caller.user.roles, reason=body.reason,
    )  # fmt: skip
    return _moved(ctx, caller, row)


@router.post("/samples/{sample_id}/transition")
async def move(sample_id: str, body: MoveBody, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Any move of the graph the caller's roles allow (retire, reopen, ...) from ``from_status``.

    Labelling moves go through ``/label``; ``evidence`` is refused (the server builds it).
    """
    if body.evidence is not None:
        msg = (
            "evidence is recorded by the server (the proposal an approval cites, the QA event "
            "of a label), never taken from the request: leave it out and give a reason instead"
        )
        raise pool.InvalidAction(msg)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _run(
        ctx, caller, pool.transition, ctx.warehouse, sid,
        body.to_status, from_status=body.from_status, actor=caller.user.username,
        roles=caller.user.roles, reason=body.reason,
    )  # fmt: skip
    return _moved(ctx, caller, row)


@router.post("/samples/{sample_id}/propose")
async def propose(sample_id: str, body: ProposeBody, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Record a proposal (system role: the trainer); nothing moves."""
    caller.require(Role.SYSTEM)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _run(
        ctx, caller, pool.propose, ctx.warehouse, sid,
        body.to_status, actor=caller.user.username, rule=body.rule, evidence=body.evidence,
    )  # fmt: skip
    out = row.model_dump(mode="json")
    if not caller.user.pii:
        out["sample_id"] = sample_ref(row.sample_id, ref_key(ctx.session_secret))
    return out


@router.post("/samples/import")
async def import_baseline(body: ImportBody, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    """Import baseline conversations as samples in their tier (approver; 403 otherwise).

    Answers the sample ids ``imported`` and ``already`` there (an earlier import wrote
    them: nothing written) and the ``refused`` ones by position with the reason; with a
    refusal and no ``skip_bad`` it is 422 and nothing is written.
    """
    caller.require(Role.APPROVER)
    done = await _run(
        ctx, caller, pool.import_baseline, ctx.warehouse, body.conversations,
        actor=caller.user.username, roles=caller.user.roles, taxonomy=ctx.settings.taxonomy,
        source=body.source, skip_bad=body.skip_bad, dry_run=body.dry_run,
    )  # fmt: skip
    name: Callable[[str], str] = (
        (lambda sid: sid)
        if caller.user.pii
        else (lambda sid: sample_ref(sid, ref_key(ctx.session_secret)))
    )
    return {
        "imported": [name(s) for s in done.imported],
        "already": [name(s) for s in done.already],
        "refused": [
            {"index": i, "detail": why if caller.user.pii else mask_pii(why)}
            for i, why in done.refused
        ],
        "dry_run": body.dry_run,
    }


@router.get("/proposals")
async def proposals(ctx: Ctx, caller: Caller) -> list[dict[str, Any]]:
    """The approval queue: open proposals with their rule and evidence."""
    caller.require(*SAMPLE_ROLES)
    rows = await _run(
        ctx, caller, pool.approval_queue, ctx.warehouse, limit=ctx.settings.queue_limit
    )
    if not caller.user.pii:
        rows = tuple(r.masked(ref_key(ctx.session_secret)) for r in rows)
    return [{**r.model_dump(mode="json"), "rule": r.rule} for r in rows]


@router.get("/export")
async def export(
    ctx: Ctx, caller: Caller, status: str | None = None, problem_type: str | None = None
) -> Response:
    """Samples with label and transcript as JSONL; texts, ``user_id`` and
    ``conversation_id`` masked unless the caller has PII."""
    caller.require(*SAMPLE_ROLES)
    filters = SampleFilter(
        status=status, problem_type=problem_type, limit=ctx.settings.export_limit
    )
    records = await _run(
        ctx, caller, pool.export_samples, ctx.warehouse, filters, reveal_pii=caller.user.pii
    )
    if not caller.user.pii:
        records = [mask_record(r, ref_key(ctx.session_secret)) for r in records]
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return Response(body, media_type="application/x-ndjson")


@router.get("/users")
async def users(ctx: Ctx, caller: Caller) -> list[dict[str, object]]:
    """Every console user (admin)."""
    caller.require(Role.ADMIN)
    found = await ctx.warehouse.run(ctx.users.all)
    return [u.public for u in found]


@router.post("/users", status_code=201)
async def create_user(body: NewUserBody, ctx: Ctx, caller: Caller) -> dict[str, object]:
    """Create a user (admin); the response holds its API key, shown this once."""
    caller.require(Role.ADMIN)
    user, key = await _run(
        ctx, caller, ctx.users.create, body.username, body.roles, pii=body.pii,
        actor=caller.user.username,
    )  # fmt: skip
    return {**user.public, "api_key": key}
