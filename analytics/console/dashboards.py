"""Live dashboards: rates per version over time, the current comparison, pool and pipeline.

Pages for any logged-in person (labeller, approver, admin); charts are inline SVG from
:mod:`analytics.console.charts`, so the strict CSP holds. Every number is read when the
page is requested (no cache); queries run on the warehouse thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from analytics.comparison import rates_table
from analytics.console import charts
from analytics.console import dashboard_data as data
from analytics.console.auth import Principal
from analytics.console.context import ConsoleContext, context
from analytics.console.pages import page_principal, render
from analytics.console.users import HUMAN_ROLES

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboards")
Ctx = Annotated[ConsoleContext, Depends(context)]


async def viewer(request: Request, ctx: Ctx) -> Principal:
    """A logged-in person (any human role); system accounts use the API."""
    caller = await page_principal(request, ctx)
    caller.require(*HUMAN_ROLES)
    return caller


Viewer = Annotated[Principal, Depends(viewer)]


FULL_ROW: Final = 1.75
"""How much wider a chart drawn for a whole-width card (rates, comparison) is than one
for the overview's column (``chart_width``): the stylesheet stretches every chart to its
card, so drawing it near that width keeps its texts near their 11 px."""


def _size(ctx: ConsoleContext, *, full_row: bool = False) -> charts.ChartSize:
    cfg = ctx.settings.dashboards
    width = round(cfg.chart_width * FULL_ROW) if full_row else cfg.chart_width
    return charts.ChartSize(width=width, height=cfg.chart_height)


def _hour_label(x: float) -> str:
    return datetime.fromtimestamp(x, UTC).strftime("%m-%d %H:00")


def _rate_chart(metric: data.MetricRates, size: charts.ChartSize) -> Any:
    by_version: dict[str, list[charts.Point]] = {}
    for item in metric.hourly:
        point = charts.Point(
            item.hour.timestamp(), item.value.rate, item.value.low, item.value.high
        )
        by_version.setdefault(item.version, []).append(point)
    series = [charts.Series(v, tuple(points)) for v, points in sorted(by_version.items())]
    title = f"{metric.metric}: rate per version and hour (Wilson interval)"
    return charts.line_chart(series, title=title, x_format=_hour_label, size=size)


async def _lag(ctx: ConsoleContext) -> Mapping[str, int] | None:
    if ctx.lag_provider is None:
        return None
    try:
        return dict(await asyncio.to_thread(ctx.lag_provider))
    except Exception:  # a broker hiccup must not take the dashboard down
        logger.warning("consumer lag unavailable", exc_info=True)
        return None


@router.get("")
async def overview(request: Request, ctx: Ctx, caller: Viewer) -> HTMLResponse:
    """Pool size per tier, dead letters, consumer lag, model versions."""
    wh = ctx.warehouse
    tiers = await wh.run(data.pool_sizes, wh)
    dlq = await wh.run(data.dead_letters, wh)
    versions = await wh.run(data.model_versions, wh)
    chart = charts.bar_chart(tiers, title="samples per status", size=_size(ctx))
    return render(
        request, "dashboard.html", caller, tiers=tiers, tier_chart=chart, dlq=dlq,
        dlq_total=sum(dlq.values()), lag=await _lag(ctx), versions=versions,
    )  # fmt: skip


@router.get("/rates")
async def rates(
    request: Request,
    ctx: Ctx,
    caller: Viewer,
    hours: Annotated[int | None, Query(ge=1, description="Window in hours up to now.")] = None,
) -> HTMLResponse:
    """Every metric's rate per version and hour, with intervals, and its window total."""
    cfg = ctx.settings.dashboards
    window = min(hours or cfg.window_hours, cfg.max_window_hours)
    since = datetime.now(UTC) - timedelta(hours=window)
    metrics = await ctx.warehouse.run(
        lambda: data.hourly_rates(ctx.warehouse, since=since, z=cfg.z)
    )
    size = _size(ctx, full_row=True)
    panels = [(m, _rate_chart(m, size)) for m in metrics]
    return render(request, "dashboard_rates.html", caller, panels=panels, hours=window, z=cfg.z)


def _estimates(rows: list[dict[str, Any]]) -> list[charts.Estimate]:
    return [
        charts.Estimate(
            label=row["name"],
            value=row["difference"],
            low=row["difference_interval"][0],
            high=row["difference_interval"][1],
            cls=row["verdict"],
        )
        for row in rows
    ]


@router.get("/comparison")
async def comparison(request: Request, ctx: Ctx, caller: Viewer) -> HTMLResponse:
    """The latest look at the canary: rates, differences, intervals, verdicts, health."""
    wh = ctx.warehouse
    look = await wh.run(data.latest_look, wh)
    looks = await wh.run(data.recent_looks, wh, ctx.settings.dashboards.recent_looks)
    rows = rates_table(look.payload) if look is not None else []
    chart = charts.interval_chart(
        _estimates(rows),
        title="difference new - prev per metric (interval)",
        size=_size(ctx, full_row=True),
    )
    return render(
        request, "dashboard_comparison.html", caller, look=look, rows=rows, chart=chart,
        looks=looks,
    )  # fmt: skip
