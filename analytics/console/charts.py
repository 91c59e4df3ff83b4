"""Charts as inline SVG, built on the server: no JavaScript, no CDN, nothing the CSP blocks.

Pure functions from numbers to ``Markup`` (an ``<svg>`` element the templates insert
as is). Every text is XML-escaped here; colours come from ``console.css`` through the
classes ``s0``…``s{SERIES_CLASSES - 1}`` (the CSP forbids inline styles, not classes or
presentation attributes). Each chart carries a ``<title>`` and ``aria-label``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from markupsafe import Markup

SERIES_CLASSES: Final = 6
"""Distinct series colours in the stylesheet; more series reuse them in turn."""
Y_TICKS: Final = 4
X_TICKS: Final = 6
_AXIS_PAD: Final = 8
_LABEL_GAP: Final = 4
_LEGEND_ROW: Final = 16
_BAR_GAP: Final = 0.25
_DOT_R: Final = 2.5
_CAP: Final = 4
_KEY: Final = 10


@dataclass(frozen=True, slots=True)
class ChartSize:
    """Outer size in px and the room kept for axis labels (left) and legend (bottom)."""

    width: int = 720
    height: int = 260
    left: int = 56
    bottom: int = 48
    top: int = 16
    right: int = 16

    @property
    def plot_width(self) -> float:
        return float(self.width - self.left - self.right)

    @property
    def plot_height(self) -> float:
        return float(self.height - self.top - self.bottom)


@dataclass(frozen=True, slots=True)
class Point:
    """One value at ``x`` with an optional interval [low, high]."""

    x: float
    y: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """A named line."""

    name: str
    points: tuple[Point, ...]


def percent(value: float) -> str:
    """0.123 → ``12.3%``."""
    return f"{value * 100:.1f}%"


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, cls: str, anchor: str = "middle") -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def _svg(size: ChartSize, title: str, body: list[str]) -> Markup:
    label = escape(title)
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {size.width} {size.height}" width="{size.width}" '
        f'height="{size.height}" aria-label="{label}"><title>{label}</title>'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 (every text escaped above)


def _span(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 1, high + 1)


def _y_axis(size: ChartSize, top: float, fmt: Callable[[float], str]) -> list[str]:
    parts = []
    for i in range(Y_TICKS + 1):
        value = top * i / Y_TICKS
        y = size.top + size.plot_height * (1 - i / Y_TICKS)
        x_end = size.left + size.plot_width
        parts.append(
            f'<line class="grid" x1="{size.left}" x2="{_n(x_end)}" y1="{_n(y)}" y2="{_n(y)}"/>'
        )
        parts.append(_text(size.left - _LABEL_GAP, y + _LABEL_GAP, fmt(value), "tick", "end"))
    return parts


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_format: Callable[[float], str],
    y_format: Callable[[float], str] = percent,
    size: ChartSize | None = None,
) -> Markup:
    """Lines with a shaded interval band per series, y from 0, a legend below."""
    box = size or ChartSize()
    points = [p for s in series for p in s.points]
    if not points:
        return _svg(box, title, [_text(box.width / 2, box.height / 2, "no data", "empty")])
    x0, x1 = _span([p.x for p in points])
    top = max(max(p.high if p.high is not None else p.y for p in points), 0.0) or 1.0

    def px(x: float) -> float:
        return box.left + (x - x0) / (x1 - x0) * box.plot_width

    def py(y: float) -> float:
        return box.top + box.plot_height * (1 - y / top)

    body = _y_axis(box, top, y_format)
    for i in range(X_TICKS + 1):
        x = x0 + (x1 - x0) * i / X_TICKS
        body.append(_text(px(x), box.top + box.plot_height + _LEGEND_ROW, x_format(x), "tick"))
    for index, line in enumerate(series):
        cls = f"s{index % SERIES_CLASSES}"
        body += _series(line, cls, px, py)
        legend_y = box.height - _AXIS_PAD
        legend_x = box.left + index * box.plot_width / max(len(series), 1)
        body.append(
            f'<rect class="key {cls}" x="{_n(legend_x)}" y="{_n(legend_y - _KEY + 1)}" '
            f'width="{_KEY}" height="{_KEY}"/>'
        )
        body.append(_text(legend_x + _KEY + _LABEL_GAP, legend_y, line.name, "legend", "start"))
    return _svg(box, title, body)


def _series(
    line: Series, cls: str, px: Callable[[float], float], py: Callable[[float], float]
) -> list[str]:
    pts = sorted(line.points, key=lambda p: p.x)
    parts = []
    banded = [p for p in pts if p.low is not None and p.high is not None]
    if banded:
        upper = [f"{_n(px(p.x))},{_n(py(p.high or 0.0))}" for p in banded]
        lower = [f"{_n(px(p.x))},{_n(py(p.low or 0.0))}" for p in reversed(banded)]
        parts.append(f'<polygon class="band {cls}" points="{" ".join(upper + lower)}"/>')
    path = " ".join(f"{_n(px(p.x))},{_n(py(p.y))}" for p in pts)
    parts.append(f'<polyline class="line {cls}" points="{path}"/>')
    parts += [
        f'<circle class="dot {cls}" cx="{_n(px(p.x))}" cy="{_n(py(p.y))}" r="{_DOT_R}"/>'
        for p in pts
    ]
    return parts


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    size: ChartSize | None = None,
) -> Markup:
    """Vertical bars, one per (label, value), the value written above each."""
    box = size or ChartSize()
    if not bars:
        return _svg(box, title, [_text(box.width / 2, box.height / 2, "no data", "empty")])
    top = max(max(v for _, v in bars), 0.0) or 1.0
    slot = box.plot_width / len(bars)
    body = _y_axis(box, top, y_format)
    for index, (label, value) in enumerate(bars):
        height = box.plot_height * max(value, 0.0) / top
        x = box.left + slot * (index + _BAR_GAP / 2)
        y = box.top + box.plot_height - height
        cls = f"s{index % SERIES_CLASSES}"
        body.append(
            f'<rect class="bar {cls}" x="{_n(x)}" y="{_n(y)}" '
            f'width="{_n(slot * (1 - _BAR_GAP))}" height="{_n(height)}"/>'
        )
        centre = box.left + slot * (index + 0.5)
        body.append(_text(centre, y - _LABEL_GAP, y_format(value), "value"))
        body.append(_text(centre, box.top + box.plot_height + _LEGEND_ROW, label, "tick"))
    return _svg(box, title, body)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A labelled estimate with its interval (a difference of rates, say)."""

    label: str
    value: float | None
    low: float | None
    high: float | None
    cls: str = ""


def interval_chart(
    rows: Sequence[Estimate],
    *,
    title: str,
    x_format: Callable[[float], str] = percent,
    size: ChartSize | None = None,
) -> Markup:
    """A forest plot: one row per estimate, its interval as a whisker, a line at zero."""
    box = size or ChartSize()
    known = [r for r in rows if r.value is not None]
    if not known:
        return _svg(box, title, [_text(box.width / 2, box.height / 2, "no data", "empty")])
    ends = [0.0] + [v for r in known for v in (r.value, r.low, r.high) if v is not None]
    x0, x1 = _span(ends)

    def px(x: float) -> float:
        return box.left + (x - x0) / (x1 - x0) * box.plot_width

    row_h = box.plot_height / len(rows)
    body = [
        f'<line class="zero" x1="{_n(px(0))}" x2="{_n(px(0))}" y1="{box.top}" '
        f'y2="{_n(box.top + box.plot_height)}"/>'
    ]
    for i in range(X_TICKS + 1):
        x = x0 + (x1 - x0) * i / X_TICKS
        body.append(_text(px(x), box.top + box.plot_height + _LEGEND_ROW, x_format(x), "tick"))
    for index, row in enumerate(rows):
        y = box.top + row_h * (index + 0.5)
        body.append(_text(box.left - _LABEL_GAP, y + _LABEL_GAP, row.label, "tick", "end"))
        if row.value is None:
            continue
        cls = f"est {row.cls}".strip()
        if row.low is not None and row.high is not None:
            lo, hi = px(row.low), px(row.high)
            body.append(
                f'<line class="{cls}" x1="{_n(lo)}" x2="{_n(hi)}" y1="{_n(y)}" y2="{_n(y)}"/>'
            )
            body += [
                f'<line class="{cls}" x1="{_n(e)}" x2="{_n(e)}" '
                f'y1="{_n(y - _CAP)}" y2="{_n(y + _CAP)}"/>'
                for e in (lo, hi)
            ]
        body.append(
            f'<circle class="{cls}" cx="{_n(px(row.value))}" cy="{_n(y)}" r="{_DOT_R * 1.6}"/>'
        )
    return _svg(box, title, body)
