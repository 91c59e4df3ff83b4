"""Issue 18, dashboards: round ticks, unique and unclipped x labels, crowded labels turned."""

from __future__ import annotations

import re

import pytest

from analytics.console.charts import (
    ChartSize,
    Estimate,
    Point,
    Series,
    XLabel,
    bar_chart,
    crowded,
    decimals,
    fit_labels,
    interval_chart,
    label_width,
    line_chart,
    nice_step,
    nice_ticks,
    percent_ticks,
    place_label,
)

HOUR = 3600.0
TICK_RE = re.compile(
    r'<text x="([\d.]+)" y="[\d.]+" class="tick" text-anchor="(\w+)"[^>]*>([^<]*)<'
)


def _ticks(svg: str) -> list[tuple[float, str, str]]:
    """(x, anchor, text) of every tick label of a chart."""
    return [(float(x), anchor, text) for x, anchor, text in TICK_RE.findall(svg)]


@pytest.mark.parametrize(
    ("span", "target", "step"),
    [(0.792, 5, 0.2), (0.45, 5, 0.1), (37, 5, 10), (3, 5, 1), (0.013, 5, 0.005), (120, 4, 50)],
)
def test_steps_are_one_two_or_five_times_a_power_of_ten(
    span: float, target: int, step: float
) -> None:
    found = nice_step(span, target)
    assert found == pytest.approx(step)
    assert span / found <= target


def test_ticks_are_round_and_cover_the_data() -> None:
    # the rates chart's old axis: top 0.792 in four parts gave 19.8 %, 39.6 %, ...
    ticks = nice_ticks(0.0, 0.792)
    assert ticks == pytest.approx((0.0, 0.2, 0.4, 0.6, 0.8))
    assert [percent_ticks(0.2)(v) for v in ticks] == ["0%", "20%", "40%", "60%", "80%"]
    assert nice_ticks(0.0, 0.45) == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4, 0.5))
    assert nice_ticks(0.0, 0.8) == pytest.approx((0.0, 0.2, 0.4, 0.6, 0.8))  # no extra tick
    assert nice_ticks(-0.034, 0.012, target=6)[0] == pytest.approx(-0.04)
    assert nice_ticks(0.0, 1.0, whole=True) == (0.0, 1.0)  # no half samples
    assert nice_ticks(0.0, 0.0) == pytest.approx((0.0, 0.2, 0.4, 0.6, 0.8, 1.0))


def test_tick_labels_have_the_decimals_their_step_needs() -> None:
    assert (decimals(10), decimals(1), decimals(0.5), decimals(0.02)) == (0, 0, 1, 2)
    assert [percent_ticks(0.005)(v) for v in (0.0, 0.005, 0.01)] == ["0.0%", "0.5%", "1.0%"]


def test_repeated_x_labels_are_dropped_and_crowded_ones_thinned() -> None:
    # half-hour ticks formatted as hours repeat each hour's label
    ticks = [(56 + i * 20.0, f"{i // 2:02d}:00") for i in range(24)]
    labels = fit_labels(ticks, 720)
    texts = [label.text for label in labels]
    assert len(texts) == len(set(texts))
    assert texts[0] == "00:00"
    for left, right in zip(labels, labels[1:], strict=False):
        assert right.extent[0] - left.extent[1] >= 8  # no two labels overlap


def test_a_label_at_the_right_edge_ends_at_its_tick() -> None:
    text = "12-03 14:00"
    assert place_label(704, text, 720) == XLabel(704, text, "end")
    assert place_label(360, text, 720).anchor == "middle"
    assert place_label(5, text, 720).anchor == "start"
    label = place_label(704, text, 720)
    assert label.extent[1] <= 720
    assert label.extent[1] - label.extent[0] == pytest.approx(label_width(text))


def test_the_rates_chart_has_round_y_ticks_and_unique_unclipped_x_labels() -> None:
    start = 1_764_800_000.0 - 1_764_800_000.0 % HOUR
    points = tuple(Point(start + i * HOUR, 0.5, 0.4, 0.792) for i in range(3))
    svg = str(
        line_chart(
            [Series("model_v1", points)],
            title="rates",
            x_format=lambda x: f"{int(x // HOUR % 24):02d}:00",
            size=ChartSize(width=720),
        )
    )
    ticks = _ticks(svg)
    y_labels = [text for _, anchor, text in ticks if text.endswith("%")]
    assert y_labels == ["0%", "20%", "40%", "60%", "80%"]
    x_labels = [(x, anchor, text) for x, anchor, text in ticks if not text.endswith("%")]
    assert len(x_labels) == 3  # one per hour of data, not six ticks of three hours
    assert len({text for _, _, text in x_labels}) == 3
    last_x, last_anchor, last_text = x_labels[-1]
    right = last_x if last_anchor == "end" else last_x + label_width(last_text) / 2
    assert right <= 720


def test_a_long_window_is_thinned_to_labels_that_fit() -> None:
    points = tuple(Point(i * HOUR, 0.1) for i in range(48))
    svg = str(
        line_chart([Series("v", points)], title="t", x_format=lambda x: f"day {x / HOUR:.0f}h")
    )
    x_labels = [(x, text) for x, _, text in _ticks(svg) if not text.endswith("%")]
    assert 2 <= len(x_labels) < 48
    gaps = [b[0] - a[0] for a, b in zip(x_labels, x_labels[1:], strict=False)]
    assert min(gaps) >= label_width("day 47h")


def test_crowded_bar_names_are_turned_and_the_chart_grows_to_hold_them() -> None:
    statuses = [
        "captured", "problem", "rejected", "downweighted", "candidate_baseline",
        "secondary_baseline", "core_baseline", "demoted", "retired",
    ]  # fmt: skip
    assert crowded(statuses, 648 / len(statuses))
    svg = str(bar_chart([(s, 3) for s in statuses], title="pool", size=ChartSize(width=720)))
    assert svg.count('transform="rotate(-') == len(statuses)
    height = int(re.search(r'height="(\d+)"', svg)[1])  # type: ignore[index]
    assert height > ChartSize().height
    few = str(bar_chart([("problem", 3), ("captured", 1)], title="pool"))
    assert "rotate(" not in few
    assert not crowded(["problem", "captured"], 324)


def test_bar_counts_get_whole_round_ticks() -> None:
    svg = str(bar_chart([("problem", 37), ("captured", 12)], title="pool"))
    y_labels = [text for _, anchor, text in _ticks(svg) if anchor == "end"]
    assert y_labels == ["0", "10", "20", "30", "40"]


def test_the_forest_plot_has_round_percent_ticks() -> None:
    svg = str(interval_chart([Estimate("x", -0.021, -0.034, -0.008)], title="d"))
    labels = [text for _, anchor, text in _ticks(svg) if text.endswith("%")]
    assert labels[0] == "-4%"
    assert "0%" in labels
    assert all(re.fullmatch(r"-?\d+%", t) for t in labels)


def test_the_forest_plot_makes_room_for_long_metric_names() -> None:
    name = "problem:missing_knowledge"
    svg = str(interval_chart([Estimate(name, -0.25, -0.28, -0.22)], title="d"))
    row = re.search(rf'<text x="([\d.]+)" y="[\d.]+" class="tick" text-anchor="end">{name}<', svg)
    assert row is not None
    assert float(row[1]) - label_width(name) >= 0  # starts inside the chart
