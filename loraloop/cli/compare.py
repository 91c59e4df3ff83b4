"""``loraloop compare NEW PREV`` (or ``--new NEW --prev PREV``): one read-only look at a
canary against its previous version.

Prints per problem type and guardrail the rates of both versions, the difference with
the always-valid interval the decision uses, the relative change, each arm's labelling
coverage and the verdict with its reason, then the rollout steps compared, the
allowlisted testers left out, the experiment's health and the overall decision;
``--json`` prints the same as JSON. The look is not
recorded (only the rollout controller's scheduled looks count toward the two-looks rule),
but the previous recorded look is used, so the verdicts match what the controller sees.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from loraloop.cli.common import (
    DataDir,
    console,
    fail,
    load_settings,
    open_warehouse,
    require_warehouse,
)
from loraloop.exceptions import LoraloopError

if TYPE_CHECKING:
    from datetime import datetime

    from analytics.warehouse import Warehouse

_PERCENT = 100.0


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * _PERCENT:.2f}%"


def _interval(bounds: list[float | None]) -> str:
    return f"[{_pct(bounds[0])}, {_pct(bounds[1])}]"


def _rates_table(payload: dict[str, Any]) -> Table:
    from analytics.comparison import rates_table

    table = Table(title=f"{payload['new']} vs {payload['prev']}")
    for column in (
        "metric",
        "kind",
        "prev",
        "new",
        "difference",
        "interval",
        "relative",
        "labelled",
        "verdict",
        "why",
    ):
        left = column in {"metric", "kind"}
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "metric")
    for row in rates_table(payload):
        table.add_row(
            row["name"],
            row["kind"],
            f"{_pct(row['prev']['rate'])} (n={row['prev']['conversations'] or 0:g})",
            f"{_pct(row['new']['rate'])} (n={row['new']['conversations'] or 0:g})",
            _pct(row["difference"]),
            _interval(row["difference_interval"]),
            _pct(row["relative_change"]),
            _coverage(row.get("label_coverage")),
            row["verdict"],
            row["reason"],
        )
    return table


def _coverage(coverage: dict[str, float] | None) -> str:
    if coverage is None:
        return "–"
    return f"{coverage['prev']:.0%} / {coverage['new']:.0%}"


def _print_context(payload: dict[str, Any]) -> None:
    out = console.stdout_console
    steps = payload.get("steps") or []
    if steps:
        shares = " → ".join(f"{s['share'] * _PERCENT:g} %" for s in steps)
        out.print(f"steps compared (each within its own window): {shares}", highlight=False)
    else:
        out.print("steps compared: one (no rollout recorded)", highlight=False)
    for version, seen in sorted((payload.get("testers") or {}).items()):
        out.print(
            f"allowlisted testers left out: {seen['users']} users, "
            f"{seen['conversations']} conversations on {version}",
            highlight=False,
        )


def _print_human(payload: dict[str, Any]) -> None:
    out = console.stdout_console
    out.print(_rates_table(payload))
    _print_context(payload)
    health = payload["health"]
    state = "healthy" if health["healthy"] else "UNHEALTHY"
    out.print(
        f"health: {state} (SRM p = {health['srm_p_value']:.3g}, "
        f"both versions: {_pct(health['multiple_exposure_share'])})",
        highlight=False,
    )
    for reason in health["reasons"]:
        out.print(f"  - {reason}", highlight=False)
    out.print(f"decision: [bold]{payload['decision']}[/] ({payload['reason']})")


def _split(warehouse: Warehouse, new: str, share: float | None) -> tuple[float, datetime | None]:
    from trainer.rollout import RolloutStore

    if share is not None:
        return share, None
    state = RolloutStore(warehouse).load(new)
    if state is None:
        fail(f"no rollout is recorded for {new}; pass --share PERCENT (its share of users)")
    return state.share_percent(RolloutStore(warehouse).settings), state.step_started_at


def _one(name: str, positional: str | None, option: str | None) -> str:
    if positional and option and positional != option:
        fail(f"{name} given twice ({positional!r} and --{name.lower()} {option!r}): give it once")
    chosen = positional or option
    if not chosen:
        fail(
            "name the two versions: `loraloop compare NEW PREV` or "
            "`loraloop compare --new NEW --prev PREV` (e.g. model_v2 model_v1)"
        )
    return chosen


def _empty_arm(payload: dict[str, Any]) -> str | None:
    """The version (new first) with no conversation in any metric, or None."""
    from analytics.comparison import rates_table

    rows = rates_table(payload)
    for arm in ("new", "prev"):
        if not any(row[arm]["conversations"] for row in rows):
            return str(payload[arm])
    return None


def compare(
    new: Annotated[
        str | None,
        typer.Argument(
            metavar="NEW", help="The canary version, e.g. model_v2 (or --new).", show_default=False
        ),
    ] = None,
    prev: Annotated[
        str | None,
        typer.Argument(
            metavar="PREV",
            help="The version it is compared with, e.g. model_v1 or base (or --prev).",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
    share: Annotated[
        float | None,
        typer.Option(
            "--share",
            help="The canary's share of users in percent; default: the rollout's current step.",
        ),
    ] = None,  # fmt: skip
    data_dir: DataDir = None,
    new_option: Annotated[
        str | None, typer.Option("--new", help="The canary version, instead of NEW.")
    ] = None,
    prev_option: Annotated[
        str | None, typer.Option("--prev", help="The version compared with, instead of PREV.")
    ] = None,
) -> None:
    """Compare NEW with PREV per problem type and guardrail (read-only)."""
    from analytics.comparison import check_versions, comparison_to_dict
    from analytics.comparison import compare as compare_in_warehouse
    from trainer.rollout import RolloutStore

    new = _one("NEW", new, new_option)
    prev = _one("PREV", prev, prev_option)
    settings = load_settings(data_dir)
    require_warehouse(settings)
    warehouse = open_warehouse(settings, migrate=False)
    try:
        check_versions(warehouse, new=new, prev=prev)
        percent, since = _split(warehouse, new, share)
        testers = sorted(RolloutStore(warehouse).settings.allowlist)
        comparison = compare_in_warehouse(
            warehouse,
            new=new,
            prev=prev,
            split=percent / _PERCENT,
            since=since,
            excluded_users=testers,
        )
    except LoraloopError as e:
        fail(str(e))
    finally:
        warehouse.close()
    payload = comparison_to_dict(comparison, new=new, prev=prev)
    empty = _empty_arm(payload)
    if empty is not None:
        window = f" since its rollout step began ({since:%Y-%m-%d %H:%M} UTC)" if since else ""
        fail(
            f"{empty} has no exposed conversation to compare{window}, so there is no "
            "decision to make: wait for traffic on both versions, or check the versions "
            "and --share"
        )
    if json_out:
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        _print_human(payload)
