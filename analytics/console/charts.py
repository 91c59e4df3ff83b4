"""Charts as inline SVG, built on the server: no JavaScript, no CDN, nothing the CSP blocks.

Pure functions from numbers to ``Markup`` (an ``<svg>`` element the templates insert
as is). Every text is XML-escaped here; colours come from ``console.css`` through the
classes ``s0``…``s{SERIES_CLASSES - 1}`` (the CSP forbids inline styles, not classes or
presentation attributes). Each chart carries a ``<title>`` and ``aria-label``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from html import escape
from typing import Final

from markupsafe import Markup

SERIES_CLASSES: Final = 6
"""Distinct series colours in the stylesheet; more series reuse them in turn."""
Y_TICKS: Final = 5
"""Most intervals on a value axis (its ticks are :func:`nice_ticks`)."""
X_TICKS: Final = 6
NICE_MULTIPLES: Final = (1.0, 2.0, 5.0)
"""Tick steps are one of these times a power of ten."""
FONT_PX: Final = 11
"""Font size of chart texts (``console.css``)."""
CHAR_WIDTH: Final = 6.6
"""Estimated px per character of an 11 px label (digits and lower case in system-ui)."""
LABEL_SPACING: Final = 8.0
"""Least px between two x labels."""
ROTATE_DEG: Final = 40
"""How far crowded category labels are turned."""
_EPS: Final = 1e-9
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


def nice_step(span: float, target: int) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that covers ``span`` in at most
    ``target`` intervals: ticks people read at a glance (0.2, not 0.198)."""
    if not math.isfinite(span) or span <= 0 or target < 1:
        return 1.0
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in (*NICE_MULTIPLES, 10.0):
        step = multiple * power
        if step >= raw * (1 - _EPS):
            return step
    return 10.0 * power  # pragma: no cover (10 × power always covers raw)


def nice_ticks(
    low: float, high: float, *, target: int = Y_TICKS, whole: bool = False
) -> tuple[float, ...]:
    """Round tick values from the step multiple at or below ``low`` to the one at or above
    ``high`` (the axis then spans exactly the ticks, so no label is odd or repeated).

    ``whole``: steps of at least 1 (counts of samples have no half ticks).
    """
    low, high = min(low, high), max(low, high)
    if high == low:
        high = low + (abs(low) or 1.0)
    step = nice_step(high - low, target)
    if whole:
        step = max(step, 1.0)
    first = math.floor(low / step + _EPS)
    last = math.ceil(high / step - _EPS)
    digits = decimals(step) + 2
    return tuple(round(i * step, digits) + 0.0 for i in range(first, last + 1))


def decimals(step: float) -> int:
    """Digits after the point that tell ticks ``step`` apart: 0 for 10, 1 for 0.5, 2 for 0.02."""
    if not math.isfinite(step) or step <= 0:
        return 0
    return max(0, -math.floor(math.log10(step) + _EPS))


def tick_step(ticks: Sequence[float]) -> float:
    """The step between evenly spaced ``ticks`` (1 for fewer than two)."""
    return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0


def percent_ticks(step: float) -> Callable[[float], str]:
    """A tick formatter for fractions shown as percent with as many decimals as ``step``
    needs: step 0.1 → ``0%``, ``10%``; step 0.005 → ``0.5%``, ``1.0%``."""
    places = decimals(step * 100)
    return lambda value: f"{value * 100:.{places}f}%"


def number_ticks(step: float) -> Callable[[float], str]:
    """A tick formatter for plain numbers with as many decimals as ``step`` needs."""
    places = decimals(step)
    return lambda value: f"{value:.{places}f}"


def label_width(text: str) -> float:
    """Estimated width in px of a tick label (the SVG is drawn without measuring text)."""
    return len(text) * CHAR_WIDTH


@dataclass(frozen=True, slots=True)
class XLabel:
    """One x-axis label: where its tick is, its text, and how it is anchored."""

    x: float
    text: str
    anchor: str = "middle"

    @property
    def extent(self) -> tuple[float, float]:
        """Left and right edge in px of the (unrotated) label."""
        width = label_width(self.text)
        if self.anchor == "end":
            return self.x - width, self.x
        if self.anchor == "start":
            return self.x, self.x + width
        return self.x - width / 2, self.x + width / 2


def place_label(x: float, text: str, chart_width: float) -> XLabel:
    """The label at ``x`` anchored so that it stays inside the chart: centred on its tick,
    ending at it near the right edge (the last label is not clipped), starting at it near
    the left edge."""
    half = label_width(text) / 2
    if x + half > chart_width:
        return XLabel(x, text, "end")
    if x - half < 0:
        return XLabel(x, text, "start")
    return XLabel(x, text)


def fit_labels(
    ticks: Sequence[tuple[float, str]], chart_width: float, *, gap: float = LABEL_SPACING
) -> tuple[XLabel, ...]:
    """Unique x labels that do not overlap: a label repeating an earlier text is dropped
    (hours formatted from half-hour ticks), then every k-th label is kept, with the
    smallest k at which no two kept labels come closer than ``gap`` px."""
    seen: set[str] = set()
    unique: list[XLabel] = []
    for x, text in sorted(ticks, key=lambda t: t[0]):
        if text not in seen:
            seen.add(text)
            unique.append(place_label(x, text, chart_width))
    for stride in range(1, len(unique) + 1):
        kept = unique[::stride]
        if all(b.extent[0] - a.extent[1] >= gap for a, b in itertools.pairwise(kept)):
            return tuple(kept)
    return tuple(unique[:1])  # pragma: no cover (a single label always fits)


def crowded(labels: Sequence[str], slot: float, *, gap: float = LABEL_SPACING) -> bool:
    """Whether category labels, one per ``slot`` px, would overlap written level (then
    they are turned by :data:`ROTATE_DEG`: every bar keeps its name)."""
    return any(label_width(text) + gap > slot for text in labels)


def rotated_depth(labels: Sequence[str]) -> float:
    """How far below the axis rotated labels reach, in px (the room the chart adds)."""
    longest = max((label_width(t) for t in labels), default=0.0)
    angle = math.radians(ROTATE_DEG)
    return longest * math.sin(angle) + FONT_PX * math.cos(angle)


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, cls: str, anchor: str = "middle") -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def _rotated(x: float, y: float, text: str) -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" class="tick" text-anchor="end" '
        f'transform="rotate(-{ROTATE_DEG} {_n(x)} {_n(y)})">{escape(text)}</text>'
    )


def _x_labels(labels: Sequence[XLabel], y: float) -> list[str]:
    return [_text(label.x, y, label.text, "tick", label.anchor) for label in labels]


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


def _y_axis(size: ChartSize, ticks: Sequence[float], fmt: Callable[[float], str]) -> list[str]:
    """Grid lines and labels at ``ticks``; the axis runs from the first tick to the last."""
    parts = []
    low, high = ticks[0], ticks[-1]
    for value in ticks:
        y = size.top + size.plot_height * (1 - (value - low) / (high - low))
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
    y_format: Callable[[float], str] | None = None,
    size: ChartSize | None = None,
) -> Markup:
    """Lines with a shaded interval band per series, y from 0, a legend below.

    The y axis has round ticks (:func:`nice_ticks`; labelled as percent unless
    ``y_format``); the x axis is labelled at the points' own x values, each text once,
    thinned to fit (:func:`fit_labels`).
    """
    box = size or ChartSize()
    points = [p for s in series for p in s.points]
    if not points:
        return _svg(box, title, [_text(box.width / 2, box.height / 2, "no data", "empty")])
    x0, x1 = _span([p.x for p in points])
    top = max(max(p.high if p.high is not None else p.y for p in points), 0.0) or 1.0
    ticks = nice_ticks(0.0, top)
    axis_top = ticks[-1]

    def px(x: float) -> float:
        return box.left + (x - x0) / (x1 - x0) * box.plot_width

    def py(y: float) -> float:
        return box.top + box.plot_height * (1 - y / axis_top)

    body = _y_axis(box, ticks, y_format or percent_ticks(tick_step(ticks)))
    xs = sorted({p.x for p in points})
    labels = fit_labels([(px(x), x_format(x)) for x in xs], box.width)
    body += _x_labels(labels, box.top + box.plot_height + _LEGEND_ROW)
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
    y_format: Callable[[float], str] | None = None,
    size: ChartSize | None = None,
) -> Markup:
    """Vertical bars, one per (label, value), the value written above each.

    The value axis has round ticks (whole numbers when every value is one); when the
    names would overlap written level they are turned (:func:`crowded`) and the chart
    grows downwards to hold them.
    """
    box = size or ChartSize()
    if not bars:
        return _svg(box, title, [_text(box.width / 2, box.height / 2, "no data", "empty")])
    names = [label for label, _ in bars]
    turned = crowded(names, box.plot_width / len(bars))
    if turned:
        depth = math.ceil(rotated_depth(names)) + _LABEL_GAP
        first = label_width(names[0]) * math.cos(math.radians(ROTATE_DEG))
        left = max(box.left, math.ceil(first - box.plot_width / len(bars) / 2) + _LABEL_GAP)
        box = replace(box, height=box.height + depth, bottom=box.bottom + depth, left=left)
    values = [float(v) for _, v in bars]
    top = max(max(values), 0.0) or 1.0
    ticks = nice_ticks(0.0, top, whole=all(v.is_integer() for v in values))
    axis_top = ticks[-1]
    fmt = y_format or number_ticks(tick_step(ticks))
    slot = box.plot_width / len(bars)
    body = _y_axis(box, ticks, fmt)
    axis_y = box.top + box.plot_height
    for index, (label, value) in enumerate(bars):
        height = box.plot_height * max(value, 0.0) / axis_top
        x = box.left + slot * (index + _BAR_GAP / 2)
        y = axis_y - height
        cls = f"s{index % SERIES_CLASSES}"
        body.append(
            f'<rect class="bar {cls}" x="{_n(x)}" y="{_n(y)}" '
            f'width="{_n(slot * (1 - _BAR_GAP))}" height="{_n(height)}"/>'
        )
        centre = box.left + slot * (index + 0.5)
        shown = y_format(value) if y_format else f"{value:g}"
        body.append(_text(centre, y - _LABEL_GAP, shown, "value"))
        if turned:
            body.append(_rotated(centre, axis_y + _LEGEND_ROW - _LABEL_GAP, label))
        else:
            body.append(_text(centre, axis_y + _LEGEND_ROW, label, "tick"))
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
    x_format: Callable[[float], str] | None = None,
    size: ChartSize | None = None,
) -> Markup:
    """A forest plot: one row per estimate, its interval as a whisker, a line at zero.

    The x axis has round ticks (:func:`nice_ticks`, labelled as percent unless
    ``x_format``), thinned to fit; the left margin widens to hold the longest row name.
    """
    box = size or ChartSize()
    known = [r for r in rows if r.value is not None]
    if not known:
        return _svg(box, title, [_text(box.width / 2, box.height / 2, "no data", "empty")])
    ends = [0.0] + [v for r in known for v in (r.value, r.low, r.high) if v is not None]
    ticks = nice_ticks(*_span(ends), target=X_TICKS)
    x0, x1 = ticks[0], ticks[-1]
    longest = max(label_width(r.label) for r in rows)
    box = replace(box, left=max(box.left, math.ceil(longest) + 2 * _LABEL_GAP))

    def px(x: float) -> float:
        return box.left + (x - x0) / (x1 - x0) * box.plot_width

    row_h = box.plot_height / len(rows)
    body = [
        f'<line class="zero" x1="{_n(px(0))}" x2="{_n(px(0))}" y1="{box.top}" '
        f'y2="{_n(box.top + box.plot_height)}"/>'
    ]
    fmt = x_format or percent_ticks(tick_step(ticks))
    labels = fit_labels([(px(x), fmt(x)) for x in ticks], box.width)
    body += _x_labels(labels, box.top + box.plot_height + _LEGEND_ROW)
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
