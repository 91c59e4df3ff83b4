"""``loraloop samples ...``: the review console's JSON API from the command line.

The console's address comes from ``--url`` or the running stack's ``stack.json``
(``console_url``); the key from ``--key`` or ``LORALOOP_API_KEY``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from loraloop.cli.common import DataDir, console, fail, load_settings

if TYPE_CHECKING:
    from loraloop.baseline import BaselineLine

API_KEY_ENV: Final = "LORALOOP_API_KEY"
TIMEOUT_S: Final = 30.0
HTTP_ERROR: Final = 400
IMPORT_BATCH: Final = 200
"""Conversations per import request by default (the console takes 500 at most)."""
IMPORT_MAX_BATCH: Final = 500
"""The console's largest import request (``analytics.console.api.MAX_IMPORT_CONVERSATIONS``)."""
IMPORT_BATCH_BYTES: Final = 512 * 1024
"""Bytes of conversations per import request at most: half the console's default body
limit (``LORALOOP_CONSOLE__MAX_BODY_BYTES``, 1 MiB), so a batch is never refused as 413."""
MAX_LISTED: Final = 20
"""Bad or refused lines spelled out at most; the rest are counted."""
REVIEW_MARK: Final = "changed"
"""The ``review`` column of a sample whose conversation changed after its label."""

samples_app = typer.Typer(name="samples", help="Review the sample pool.", no_args_is_help=True)

Url = Annotated[
    str | None, typer.Option("--url", help="Console base URL (default: the running stack's).")
]
Key = Annotated[str | None, typer.Option("--key", help=f"API key (default: ${API_KEY_ENV}).")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (required for some moves).")]
FromStatus = Annotated[
    str,
    typer.Option(
        "--from",
        help="The status you saw (see `samples show`); refused with 409 if it moved meanwhile.",
    ),
]


def _base_url(url: str | None, data_dir: Path | None) -> str:
    if url:
        return url.rstrip("/")
    from streams.stack import read_stack

    info = read_stack(load_settings(data_dir))
    found = getattr(info, "console_url", "")
    if not found:
        fail("the running stack advertises no console_url: pass --url http://host:port")
    return str(found).rstrip("/")


def _call(
    method: str,
    path: str,
    *,
    url: str | None,
    key: str | None,
    data_dir: Path | None,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    import httpx

    token = key or os.environ.get(API_KEY_ENV, "")
    if not token:
        fail(f"no API key: pass --key or set {API_KEY_ENV}")
    base = _base_url(url, data_dir)
    try:
        response = httpx.request(
            method, base + path, json=body, timeout=TIMEOUT_S,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
    except httpx.HTTPError as e:
        fail(f"cannot reach the console at {base}: {e}")
    if response.status_code >= HTTP_ERROR:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        fail(f"{response.status_code}: {detail}")
    return response.json()


def _moved(result: dict[str, Any]) -> None:
    console.stdout_console.print(
        f"{result['sample_id']}: {result.get('from_status') or '(none)'} → "
        f"[bold]{result['to_status']}[/] ({result['action']} by {result['actor']})"
    )


@samples_app.command("list")
def list_samples(
    status: Annotated[str | None, typer.Option(help="captured, problem, ...")] = None,
    problem_type: Annotated[str | None, typer.Option(help="A taxonomy type.")] = None,
    detector: Annotated[str | None, typer.Option(help="A detector that fired.")] = None,
    search: Annotated[str | None, typer.Option(help="Text in ids, label or transcript.")] = None,
    needs_review: Annotated[
        bool,
        typer.Option(
            "--needs-review",
            help="Only samples whose conversation changed after their label (of the page "
            "fetched: raise --limit to see more).",
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    url: Url = None,
    key: Key = None,
    data_dir: DataDir = None,
) -> None:
    """List samples of the pool; `review` says "changed" for a sample to re-review (its
    conversation changed after it was labelled: relabel it before it is promoted)."""
    params = {
        "status": status, "problem_type": problem_type, "detector": detector, "search": search,
        "limit": limit,
    }  # fmt: skip
    page = _call("GET", "/api/samples", url=url, key=key, data_dir=data_dir, params=params)
    items = [s for s in page["items"] if s.get("needs_review") or not needs_review]
    title = f"{page['total']} sample(s)"
    if needs_review:
        title = f"{len(items)} of {len(page['items'])} fetched need re-review ({title})"
    table = Table(title=title)
    for column in ("sample", "status", "review", "detectors", "risk", "problem types", "model"):
        table.add_column(column)
    for s in items:
        table.add_row(
            s["sample_id"], s["status"], REVIEW_MARK if s.get("needs_review") else "",
            ", ".join(s["detectors"]), f"{s['risk_weight']:.2f}", ", ".join(s["problem_types"]),
            s["model_version"],
        )  # fmt: skip
    console.stdout_console.print(table)
    for s in items:
        if s.get("needs_review"):
            console.stdout_console.print(f"{s['sample_id']}: {s.get('review_reason', '')}")


@samples_app.command("show")
def show(sample_id: str, url: Url = None, key: Key = None, data_dir: DataDir = None) -> None:
    """Show one sample: transcript, signals, label, audit trail (JSON)."""
    detail = _call("GET", f"/api/samples/{sample_id}", url=url, key=key, data_dir=data_dir)
    console.stdout_console.print_json(json.dumps(detail))


@samples_app.command("label")
def label(
    sample_id: str,
    acceptance: Annotated[str, typer.Option(help="Accept, Risk or Reject.")],
    risk_level: Annotated[str, typer.Option(help="low, medium, high or critical.")],
    problem_type: Annotated[
        list[str] | None, typer.Option("--problem-type", help="Repeat for several.")
    ] = None,
    corrected_response: Annotated[str | None, typer.Option(help="The right reply.")] = None,
    notes: Annotated[str | None, typer.Option()] = None,
    url: Url = None,
    key: Key = None,
    data_dir: DataDir = None,
) -> None:
    """Label a captured sample (moves it to problem, or to rejected for Accept)."""
    body: dict[str, Any] = {"acceptance": acceptance, "risk_level": risk_level, "notes": notes}
    if problem_type:
        body["problem_types"] = problem_type
    if corrected_response is not None:
        body["corrected_response"] = corrected_response
    path = f"/api/samples/{sample_id}/label"
    _moved(_call("POST", path, url=url, key=key, data_dir=data_dir, body=body))


@samples_app.command("approve")
def approve(
    sample_id: str, from_status: FromStatus, reason: Reason = None, url: Url = None,
    key: Key = None, data_dir: DataDir = None,
) -> None:  # fmt: skip
    """Promote a sample one baseline tier up from --from (approver)."""
    path = f"/api/samples/{sample_id}/approve"
    body = {"from_status": from_status, "reason": reason}
    _moved(_call("POST", path, url=url, key=key, data_dir=data_dir, body=body))


@samples_app.command("reject")
def reject(
    sample_id: str, reason: Annotated[str, typer.Option(help="Why the proposal is declined.")],
    url: Url = None, key: Key = None, data_dir: DataDir = None,
) -> None:  # fmt: skip
    """Decline a sample's open promotion proposals (approver); the sample stays."""
    path = f"/api/samples/{sample_id}/reject"
    result = _call("POST", path, url=url, key=key, data_dir=data_dir, body={"reason": reason})
    console.stdout_console.print(f"{sample_id}: declined {result['declined']} proposal(s)")


@samples_app.command("demote")
def demote(
    sample_id: str, from_status: FromStatus,
    reason: Annotated[str, typer.Option(help="Why it leaves the baseline.")],
    url: Url = None, key: Key = None, data_dir: DataDir = None,
) -> None:  # fmt: skip
    """Take a baseline sample out of the tier given as --from (approver)."""
    path = f"/api/samples/{sample_id}/demote"
    body = {"from_status": from_status, "reason": reason}
    _moved(_call("POST", path, url=url, key=key, data_dir=data_dir, body=body))


class ImportTier(StrEnum):
    """A baseline tier an imported conversation may go into."""

    CORE_BASELINE = "core_baseline"
    SECONDARY_BASELINE = "secondary_baseline"
    CANDIDATE_BASELINE = "candidate_baseline"


def _listed(lines: Sequence[str]) -> str:
    shown = "\n".join(f"  {line}" for line in lines[:MAX_LISTED])
    more = len(lines) - MAX_LISTED
    return shown + (f"\n  … and {more} more" if more > 0 else "")


def _with_defaults(
    good: Sequence[BaselineLine], tier: ImportTier | None, problem_types: Sequence[str]
) -> tuple[list[BaselineLine], list[str]]:
    """Lines with ``--tier`` / ``--problem-type`` filled in where they name none, and the
    lines those defaults made invalid (a --problem-type that is no type name)."""
    from pydantic import ValidationError

    from loraloop.baseline import BaselineConversation, BaselineLine
    from loraloop.events import describe_error

    out: list[BaselineLine] = []
    bad: list[str] = []
    for line in good:
        given = line.conversation.model_fields_set
        update: dict[str, Any] = {}
        if tier is not None and "tier" not in given:
            update["tier"] = tier.value
        if problem_types and not line.conversation.problem_types:
            update["problem_types"] = list(problem_types)
        if not update:
            out.append(line)
            continue
        data = {**line.conversation.model_dump(exclude_unset=True), **update}
        try:
            out.append(BaselineLine(line.line_no, BaselineConversation.model_validate(data)))
        except ValidationError as e:
            bad.append(f"line {line.line_no}: {describe_error(e)} (from the command line)")
    return out, bad


def _clashes(lines: Sequence[BaselineLine]) -> dict[int, str]:
    """Line number → why, for lines whose id an earlier line uses with other messages."""
    first: dict[str, BaselineLine] = {}
    clashes: dict[int, str] = {}
    for line in lines:
        name = line.conversation.conversation_id
        earlier = first.setdefault(name, line)
        if earlier.conversation.content_sha256() != line.conversation.content_sha256():
            clashes[line.line_no] = (
                f"line {line.line_no}: id: {line.conversation.id!r} is line "
                f"{earlier.line_no}'s id, with other messages: give one of them another id"
            )
    return clashes


def _batches(lines: Sequence[BaselineLine], size: int) -> Iterator[list[BaselineLine]]:
    """Runs of at most ``size`` lines and :data:`IMPORT_BATCH_BYTES` of JSON each."""
    batch: list[BaselineLine] = []
    used = 0
    for line in lines:
        weight = len(orjson.dumps(line.conversation.model_dump(mode="json")))
        if batch and (len(batch) >= size or used + weight > IMPORT_BATCH_BYTES):
            yield batch
            batch, used = [], 0
        batch.append(line)
        used += weight
    if batch:
        yield batch


def _send(
    lines: Sequence[BaselineLine], *, source: str, size: int, dry_run: bool, skip_bad: bool,
    url: str | None, key: str | None, data_dir: Path | None,
) -> tuple[int, int, list[str]]:  # fmt: skip
    """Every batch through ``POST /api/samples/import``: (imported, already, refused lines)."""
    imported = already = 0
    refused: list[str] = []
    progress = Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
        MofNCompleteColumn(), console=console.stderr_console, transient=True,
    )  # fmt: skip
    with progress:
        task = progress.add_task("checking" if dry_run else "importing", total=len(lines))
        for batch in _batches(lines, size):
            body = {
                "source": source, "dry_run": dry_run, "skip_bad": skip_bad,
                "conversations": [b.conversation.model_dump(mode="json") for b in batch],
            }  # fmt: skip
            done = _call(
                "POST", "/api/samples/import", url=url, key=key, data_dir=data_dir, body=body
            )
            imported += len(done["imported"])
            already += len(done["already"])
            refused += [f"line {batch[r['index']].line_no}: {r['detail']}" for r in done["refused"]]
            progress.advance(task, len(batch))
    return imported, already, refused


@samples_app.command("import")
def import_baseline(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True,
            help="JSONL, one conversation a line: {\"messages\": [{\"role\": \"user\", "
            "\"content\": …}, …, {\"role\": \"assistant\", \"content\": <the accepted "
            "answer>}], \"tier\": …, \"problem_types\": […], \"id\": …} (see "
            "examples/baseline.jsonl).",
        ),
    ],
    tier: Annotated[
        ImportTier | None,
        typer.Option(help="The tier of lines that name none (default core_baseline)."),
    ] = None,
    problem_type: Annotated[
        list[str] | None,
        typer.Option(
            "--problem-type", help="Problem types of lines that name none; repeat for several."
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Import the good lines and list the bad ones (default: a bad "
            "line imports nothing)."
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=IMPORT_MAX_BATCH, help="Conversations per request.")
    ] = IMPORT_BATCH,
    url: Url = None,
    key: Key = None,
    data_dir: DataDir = None,
) -> None:  # fmt: skip
    """Import an existing baseline: conversations ending in their accepted answer (approver).

    Each becomes a baseline sample in its tier, audited as your moves with the reason
    "imported baseline (FILE)"; importing the same file again writes nothing.
    """
    from loraloop.baseline import BaselineLine, read_baseline

    parsed = list(read_baseline(file))
    good = [p for p in parsed if isinstance(p, BaselineLine)]
    bad: list[str] = [str(p) for p in parsed if not isinstance(p, BaselineLine)]
    good, made_bad = _with_defaults(good, tier, problem_type or [])
    clashes = _clashes(good)
    bad += [*made_bad, *clashes.values()]
    good = [g for g in good if g.line_no not in clashes]
    if bad and not skip_bad:
        fail(
            f"{file}: {len(bad)} bad line(s), nothing imported (fix them, or pass --skip-bad "
            f"to import the other {len(good)}):\n{_listed(bad)}"
        )
    if not good:
        fail(f"{file}: no conversation to import ({len(bad)} bad line(s))")
    call: dict[str, Any] = {
        "source": file.name, "size": batch_size, "url": url, "key": key, "data_dir": data_dir,
    }  # fmt: skip
    if not skip_bad:  # the whole file is checked before anything is written
        _, _, refused = _send(good, dry_run=True, skip_bad=True, **call)
        if refused:
            fail(
                f"{file}: the console refused {len(refused)} line(s), nothing imported (fix "
                f"them, or pass --skip-bad to import the others):\n{_listed(refused)}"
            )
    imported, already, refused = _send(good, dry_run=False, skip_bad=skip_bad, **call)
    out = console.stdout_console
    out.print(
        f"{file.name}: imported {imported}, already there {already}, refused "
        f"{len(refused) + len(bad)}",
        highlight=False,
    )
    if bad or refused:
        out.print(_listed([*bad, *refused]), highlight=False, soft_wrap=True)
