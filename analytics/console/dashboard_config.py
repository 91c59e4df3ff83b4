"""Settings of the live dashboards (``LORALOOP_CONSOLE__DASHBOARDS__*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DashboardSettings(BaseModel):
    """What the dashboards show and how big the charts are."""

    window_hours: int = Field(
        48, ge=1, le=24 * 90, description="Hours of the rate-over-time charts (up to now)."
    )
    max_window_hours: int = Field(
        24 * 90, ge=1, description="The largest window a `?hours=` query may ask for."
    )
    z: float = Field(
        1.96,
        gt=0,
        description="Normal quantile of the hourly rate intervals (Wilson score; 1.96: 95 %). "
        "The hourly intervals treat conversations as independent; the comparison page has "
        "the user-clustered, always-valid ones.",
    )
    recent_looks: int = Field(20, ge=1, description="Looks listed on the comparison page.")
    chart_width: int = Field(720, ge=200, description="Chart width in px.")
    chart_height: int = Field(260, ge=120, description="Chart height in px.")
