"""``loraloop samples ...``: the review console's JSON API from the command line.

The console's address comes from ``--url`` or the running stack's ``stack.json``
(``console_url``); the key from ``--key`` or ``LORALOOP_API_KEY``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from loraloop.cli.common import DataDir, console, fail, load_settings

API_KEY_ENV: Final = "LORALOOP_API_KEY"
TIMEOUT_S: Final = 30.0
HTTP_ERROR: Final = 400
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
