"""Server-rendered pages: login, review queue, sample, approval queue, audit, admin.

Pages read the session cookie; every form posts a CSRF token bound to it, and
every action is checked by role on the server (the buttons shown are only a
convenience). Texts are PII-masked for users without the PII permission.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from analytics import pool, pool_models
from analytics.console.api import TRANSCRIPT_CHANGED, label_as, resolve_sample_id
from analytics.console.auth import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    Principal,
    check_csrf,
    check_login_csrf,
    login_csrf,
    make_session,
    new_login_csrf,
    session_principal,
)
from analytics.console.context import ConsoleContext, context
from analytics.console.exceptions import InvalidRequest, NotAuthenticated
from analytics.console.moves import approve_label, menu_moves, menu_target, promotion
from analytics.console.statuses import status_of
from analytics.console.users import SAMPLE_ROLES, fold_username
from analytics.console.users import User as ConsoleUserRecord
from analytics.pool_models import SampleFilter, ref_key
from loraloop.events import Acceptance, RiskLevel
from loraloop.exceptions import LoraloopError
from loraloop.lifecycle import Role, SampleStatus
from loraloop.pii import mask_pii

TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
T = TypeVar("T")
SEE_OTHER = 303
MAX_OFFSET: Final = 2**63 - 1
"""Largest offset a query may name (the warehouse's Int64)."""
FILTER_FIELDS = (
    "status", "problem_type", "detector", "risk_level", "risk_min", "risk_max",
    "model_version", "search",
)  # fmt: skip
LABEL_FIELDS: Final = {
    "acceptance": ("acceptance",),
    "problem_types": ("problem_types", "problem type"),
    "risk_level": ("risk_level",),
    "corrected_response": ("corrected_response", "corrected response"),
    "notes": ("notes",),
}
"""The label form's fields and the words by which a refusal names each."""
INVALID_LABEL: Final = "invalid label: "
_NEXT_PROBLEM: Final = re.compile(r"; (?=[\w.]+: )")
_WHERE: Final = re.compile(r"^[\w.]+: (?:Value error, )?")
FORM_ERRORS: Final = (pool.InvalidAction, pool.ActionConflict, pool.ActionForbidden)
"""Refusals of a label that the form shows on itself (4xx), keeping what was typed."""

router = APIRouter()


@dataclass(frozen=True, slots=True)
class TurnPage:
    """Which slice of a transcript the sample page shows (long conversations page)."""

    offset: int
    size: int
    total: int

    @property
    def last(self) -> int:
        """1-based index of the last turn shown."""
        return min(self.offset + self.size, self.total)

    @property
    def previous(self) -> int | None:
        return max(self.offset - self.size, 0) if self.offset > 0 else None

    @property
    def next(self) -> int | None:
        return self.offset + self.size if self.offset + self.size < self.total else None


def field_errors(message: str) -> dict[str, str]:
    """The label form's fields a refusal is about, each with what it says of it.

    :func:`analytics.pool.validate_label` joins one ``where: what`` per problem; each is
    put next to every field it names (a problem naming none is only shown above the form).
    """
    found: dict[str, str] = {}
    for problem in _NEXT_PROBLEM.split(message.removeprefix(INVALID_LABEL)):
        said = _WHERE.sub("", problem)
        for name, words in LABEL_FIELDS.items():
            if any(word in problem for word in words):
                found[name] = f"{found[name]}; {said}" if name in found else said
    return found


@dataclass(frozen=True, slots=True)
class LabelForm:
    """What the label form shows: the values it is filled with and, after a refused
    submit, why (above the form and next to the fields concerned)."""

    acceptance: str
    problem_types: tuple[str, ...]
    risk_level: str
    corrected_response: str
    notes: str
    transcript_sha256: str
    """The snapshot the form was first rendered against; kept across refusals, so a form
    opened on an older transcript is never saved against a newer one."""
    error: str = ""
    field_errors: Mapping[str, str] = field(default_factory=dict)
    stale: bool = False
    """The refusal was about the sample or its conversation changing: reloading helps."""

    @classmethod
    def initial(cls, detail: pool_models.SampleDetail) -> LabelForm:
        """The form of a sample page: its latest label, or the agent's reply after a handoff."""
        lab = detail.label
        if lab is None:
            return cls(
                acceptance=Acceptance.RISK.value, problem_types=(), risk_level="",
                corrected_response=detail.prefill_corrected_response or "", notes="",
                transcript_sha256=detail.transcript_sha256,
            )  # fmt: skip
        return cls(
            acceptance=str(lab.acceptance), problem_types=tuple(lab.problem_types),
            risk_level=str(lab.risk_level), corrected_response=lab.corrected_response or "",
            notes=lab.notes or "", transcript_sha256=detail.transcript_sha256,
        )  # fmt: skip

    @classmethod
    def posted(cls, form: FormData) -> LabelForm:
        """The form as submitted, every value as typed."""

        def raw(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        return cls(
            acceptance=raw("acceptance").strip(),
            problem_types=tuple(str(v) for v in form.getlist("problem_types")),
            risk_level=raw("risk_level").strip(), corrected_response=raw("corrected_response"),
            notes=raw("notes"), transcript_sha256=raw("transcript_sha256").strip(),
        )  # fmt: skip

    def label_data(self) -> dict[str, Any]:
        """The label to write (:class:`~loraloop.lifecycle.Label` fields): Accept takes
        no problem types or corrected response, so the ones left on the form are dropped."""
        data: dict[str, Any] = {
            "acceptance": self.acceptance,
            "risk_level": self.risk_level,
            "notes": self.notes.strip() or None,
        }
        if self.acceptance != Acceptance.ACCEPT.value:
            data["problem_types"] = list(self.problem_types)
            data["corrected_response"] = self.corrected_response.strip() or None
        return data

    def refused(self, error: LoraloopError) -> LabelForm:
        """This form with the refusal of its submit: a label that does not validate says
        what to fix next to each field; a sample that changed meanwhile says to reload."""
        stale = isinstance(error, pool.ActionConflict)
        if isinstance(error, pool.TranscriptChanged):
            return replace(self, error=TRANSCRIPT_CHANGED, field_errors={}, stale=True)
        message = str(error)
        found = field_errors(message)
        if found:
            said = "; ".join(dict.fromkeys(found.values()))
            message = f"Not saved: {said}. Fix the marked fields and save again."
        return replace(self, error=message, field_errors=found, stale=stale)


Ctx = Annotated[ConsoleContext, Depends(context)]


async def page_principal(request: Request, ctx: Ctx) -> Principal:
    """The logged-in user of a page."""
    return await ctx.warehouse.run(session_principal, ctx, request)


User = Annotated[Principal, Depends(page_principal)]


def render(
    request: Request, name: str, caller: Principal | None, status_code: int = 200, **data: Any
) -> HTMLResponse:
    """Render ``name`` with the caller, its CSRF token and ``data``."""
    data.update(
        request=request,
        me=caller.user if caller else None,
        csrf=caller.csrf_token if caller else "",
        csrf_field=CSRF_FIELD,
        roles=Role,
        message=request.query_params.get("msg", ""),
    )
    return TEMPLATES.TemplateResponse(request, name, data, status_code=status_code)


async def _as(ctx: ConsoleContext, caller: Principal, fn: Callable[[], T]) -> T:
    """``fn`` on the warehouse thread; without the PII permission, errors come back masked
    (their messages name sample and conversation ids)."""
    try:
        return await ctx.warehouse.run(fn)
    except LoraloopError as error:
        if not caller.user.pii:
            error.args = (mask_pii(str(error)),)
        raise


async def _detail(
    ctx: ConsoleContext, caller: Principal, sample_id: str
) -> pool_models.SampleDetail:
    """The sample as ``caller`` may see it: masked, with references, without PII."""
    sid = await resolve_sample_id(ctx, caller, sample_id)
    detail = await _as(
        ctx, caller, lambda: pool.get_sample(ctx.warehouse, sid, reveal_pii=caller.user.pii)
    )
    return detail if caller.user.pii else detail.with_refs(ref_key(ctx.session_secret))


async def _form(request: Request, caller: Principal) -> FormData:
    form = await request.form()
    check_csrf(caller.csrf_token, form.get(CSRF_FIELD))
    return form


def _back(sample_id: str, message: str) -> RedirectResponse:
    url = f"/samples/{quote(sample_id, safe='')}?msg={quote(message)}"
    return RedirectResponse(url, status_code=SEE_OTHER)


def _offset(request: Request, name: str) -> int:
    """A non-negative whole-number query parameter (absent: 0)."""
    given = request.query_params.get(name) or "0"
    if not given.isascii() or not given.isdigit() or int(given) > MAX_OFFSET:
        msg = f"?{name}= must be a whole number from 0 to {MAX_OFFSET}, got {given!r}"
        raise InvalidRequest(msg)
    return int(given)


def _sample_filter(
    given: dict[str, str | None], *, limit: int, offset: int, reveal_pii: bool
) -> SampleFilter:
    """The queue's filters from query parameters; a malformed one is 422, never 500."""
    try:
        found = SampleFilter(**given, limit=limit, offset=offset, reveal_pii=reveal_pii)
    except ValidationError as e:
        problems = "; ".join(
            f"?{'.'.join(str(p) for p in err['loc'])}= {err['msg']}" for err in e.errors()
        )
        msg = f"invalid filter: {problems}"
        raise InvalidRequest(msg) from e
    for name in ("risk_min", "risk_max"):
        value = getattr(found, name)
        if value is not None and not math.isfinite(value):
            msg = f"?{name}= must be a finite number, got {value}"
            raise InvalidRequest(msg)
    return found


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _from_status(form: FormData) -> SampleStatus:
    """The status the page showed when the form was rendered (a stale one is 409)."""
    value = _text(form, "from_status")
    try:
        return SampleStatus(value)
    except ValueError:
        msg = "the form does not say which status it was made from: reload the page"
        raise pool.InvalidAction(msg) from None


# ---------------------------------------------------------------------------- login


@router.get("/login")
async def login_page(request: Request, ctx: Ctx) -> HTMLResponse:
    token = new_login_csrf(ctx)
    response = render(request, "login.html", None, login_token=token, error="")
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict")
    return response


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    form = await request.form()
    check_login_csrf(ctx, request, form.get(CSRF_FIELD))
    username, key = _text(form, "username"), _text(form, "api_key")
    user = await ctx.warehouse.run(ctx.users.by_key, key) if key else None
    if user is None or fold_username(user.username) != fold_username(username):
        token = login_csrf(ctx, request)
        error = "unknown user or key (or the user is disabled)"
        return render(request, "login.html", None, 401, login_token=token, error=error)
    response = RedirectResponse(start_page(user), status_code=SEE_OTHER)
    response.set_cookie(
        ctx.settings.cookie_name, make_session(ctx, user), max_age=ctx.settings.session_ttl_s,
        httponly=True, samesite="strict", secure=ctx.settings.secure_cookie,
    )  # fmt: skip
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Ctx, caller: User) -> Response:
    await _form(request, caller)
    await ctx.warehouse.run(ctx.users.end_sessions, caller.user.username)
    response = RedirectResponse("/login", status_code=SEE_OTHER)
    response.delete_cookie(ctx.settings.cookie_name)
    return response


# ---------------------------------------------------------------------------- pool


def start_page(user: ConsoleUserRecord) -> str:
    """The review queue, or /admin for an admin who reviews nothing (the queue is a 403)."""
    return "/queue" if user.has(*SAMPLE_ROLES) else "/admin"


@router.get("/")
async def home(caller: User) -> RedirectResponse:
    """The brand link: the caller's start page."""
    return RedirectResponse(start_page(caller.user), status_code=SEE_OTHER)


@router.get("/queue")
async def queue(request: Request, ctx: Ctx, caller: User) -> HTMLResponse:
    caller.require(*SAMPLE_ROLES)
    given = {k: request.query_params.get(k) or None for k in FILTER_FIELDS}
    if "status" not in request.query_params:
        given["status"] = SampleStatus.CAPTURED.value
    filters = _sample_filter(
        given, limit=ctx.settings.page_size, offset=_offset(request, "offset"),
        reveal_pii=caller.user.pii,
    )  # fmt: skip
    found = await _as(ctx, caller, lambda: pool.list_samples(ctx.warehouse, filters))
    page = found if caller.user.pii else found.masked(ref_key(ctx.session_secret))
    return render(
        request, "queue.html", caller, page=page, filters=given, statuses=list(SampleStatus),
        taxonomy=ctx.settings.taxonomy, risk_levels=list(RiskLevel),
    )  # fmt: skip


async def _sample_page(
    request: Request,
    ctx: ConsoleContext,
    caller: Principal,
    sample_id: str,
    *,
    status_code: int = 200,
    label_form: LabelForm | None = None,
) -> HTMLResponse:
    """The sample page; ``label_form`` fills the label form (a refused submit's values)."""
    caller.require(*SAMPLE_ROLES)
    turn_offset = _offset(request, "turns")
    detail = await _detail(ctx, caller, sample_id)
    size = ctx.settings.transcript_page_size
    total = len(detail.transcript)
    status = SampleStatus(detail.summary.status)
    promote = promotion(status, caller.user.roles)
    return render(
        request, "sample.html", caller, status_code, d=detail, s=detail.summary,
        taxonomy=ctx.settings.taxonomy, acceptances=list(Acceptance),
        risk_levels=list(RiskLevel), moves=menu_moves(status, caller.user.roles),
        approve=approve_label(promote) if promote else "",
        f=label_form or LabelForm.initial(detail),
        transcript=detail.transcript[turn_offset : turn_offset + size],
        turns=TurnPage(offset=turn_offset, size=size, total=total),
    )  # fmt: skip


@router.get("/samples/{sample_id}")
async def sample_page(sample_id: str, request: Request, ctx: Ctx, caller: User) -> HTMLResponse:
    return await _sample_page(request, ctx, caller, sample_id)


@router.get("/samples/{sample_id}/audit")
async def audit_page(sample_id: str, request: Request, ctx: Ctx, caller: User) -> HTMLResponse:
    caller.require(*SAMPLE_ROLES)
    detail = await _detail(ctx, caller, sample_id)
    return render(request, "audit.html", caller, d=detail, s=detail.summary)


@router.post("/samples/{sample_id}/label")
async def label(sample_id: str, request: Request, ctx: Ctx, caller: User) -> Response:
    """Save a label; a refused one (incomplete, stale, not allowed) is shown on the form
    with its 4xx status and everything typed kept, never on an error page.

    The form carries the transcript snapshot it was rendered against: when the
    conversation changed since, the label is refused (409) rather than written against
    text the labeller never saw.
    """
    form = await _form(request, caller)
    given = LabelForm.posted(form)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    shown = given.transcript_sha256 or None
    try:
        row = await _as(
            ctx, caller,
            lambda: label_as(ctx, caller, sid, given.label_data(), transcript_sha256=shown),
        )  # fmt: skip
    except FORM_ERRORS as error:
        return await _sample_page(
            request, ctx, caller, sample_id, status_code=status_of(error),
            label_form=given.refused(error),
        )  # fmt: skip
    return _back(sample_id, f"labelled: now {row.to_status}")


@router.post("/samples/{sample_id}/approve")
async def approve(sample_id: str, request: Request, ctx: Ctx, caller: User) -> Response:
    form = await _form(request, caller)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _as(
        ctx, caller,
        lambda: pool.approve(
            ctx.warehouse, sid, from_status=_from_status(form),
            actor=caller.user.username, roles=caller.user.roles,
            reason=_text(form, "reason") or None,
        )
    )  # fmt: skip
    return _back(sample_id, f"approved: now {row.to_status}")


@router.post("/samples/{sample_id}/decline")
async def decline(sample_id: str, request: Request, ctx: Ctx, caller: User) -> Response:
    form = await _form(request, caller)
    sid = await resolve_sample_id(ctx, caller, sample_id)
    count = await _as(
        ctx, caller,
        lambda: pool.decline_proposals(
            ctx.warehouse, sid, actor=caller.user.username, roles=caller.user.roles,
            reason=_text(form, "reason"),
        )
    )  # fmt: skip
    return _back(sample_id, f"declined {count} proposal(s)")


@router.post("/samples/{sample_id}/move")
async def move(sample_id: str, request: Request, ctx: Ctx, caller: User) -> Response:
    form = await _form(request, caller)
    action = _text(form, "action")
    target = menu_target(_from_status(form), action)
    if target is None:
        return _back(sample_id, f"{action!r} is no move from {_from_status(form)}: reload")
    sid = await resolve_sample_id(ctx, caller, sample_id)
    row = await _as(
        ctx, caller,
        lambda: pool.transition(
            ctx.warehouse, sid, target, from_status=_from_status(form),
            actor=caller.user.username, roles=caller.user.roles,
            reason=_text(form, "reason") or None,
        )
    )  # fmt: skip
    return _back(sample_id, f"{row.action}: now {row.to_status}")


@router.get("/proposals")
async def proposals(request: Request, ctx: Ctx, caller: User) -> HTMLResponse:
    caller.require(*SAMPLE_ROLES)
    rows = await _as(
        ctx, caller, lambda: pool.approval_queue(ctx.warehouse, limit=ctx.settings.queue_limit)
    )
    if not caller.user.pii:
        rows = tuple(r.masked(ref_key(ctx.session_secret)) for r in rows)
    rules = {r.name: r for r in ctx.settings.promotion_policy.rules}
    return render(request, "proposals.html", caller, rows=rows, rules=rules)


# ---------------------------------------------------------------------------- admin


@router.get("/admin")
async def admin_page(request: Request, ctx: Ctx, caller: User) -> HTMLResponse:
    caller.require(Role.ADMIN)
    users = await ctx.warehouse.run(ctx.users.all)
    return render(request, "admin.html", caller, users=users, new_key="", new_user="")


@router.post("/admin/users")
async def admin_create(request: Request, ctx: Ctx, caller: User) -> HTMLResponse:
    caller.require(Role.ADMIN)
    form = await _form(request, caller)
    roles = [str(v) for v in form.getlist("roles")]
    user, key = await ctx.warehouse.run(
        lambda: ctx.users.create(
            _text(form, "username"), roles, pii=form.get("pii") == "on",
            actor=caller.user.username,
        )
    )  # fmt: skip
    users = await ctx.warehouse.run(ctx.users.all)
    return render(request, "admin.html", caller, users=users, new_key=key, new_user=user.username)


@router.post("/admin/users/{username}")
async def admin_update(username: str, request: Request, ctx: Ctx, caller: User) -> Response:
    caller.require(Role.ADMIN)
    form = await _form(request, caller)
    action = _text(form, "action")
    options: dict[str, dict[str, Any]] = {
        "disable": {"disabled": True},
        "enable": {"disabled": False},
        "rotate": {"rotate_key": True},
        "roles": {"roles": [str(v) for v in form.getlist("roles")], "pii": form.get("pii") == "on"},
    }
    changes = options.get(action, {})
    _, key = await ctx.warehouse.run(lambda: ctx.users.update(username, **changes))
    users = await ctx.warehouse.run(ctx.users.all)
    return render(
        request, "admin.html", caller, users=users, new_key=key or "",
        new_user=username if key else "",
    )  # fmt: skip


def login_redirect() -> RedirectResponse:
    """Where an unauthenticated page request goes."""
    return RedirectResponse("/login", status_code=SEE_OTHER)


__all__ = ["NotAuthenticated", "login_redirect", "render", "router"]
