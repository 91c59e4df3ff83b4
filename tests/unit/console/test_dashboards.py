"""Live dashboards: login required, SVG charts, numbers equal to a direct query."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from analytics.comparison import record_look
from analytics.console.app import create_console
from analytics.console.charts import Estimate, Point, Series, bar_chart, interval_chart, line_chart
from analytics.rows import CONVERSATION_COLUMNS
from analytics.stats import ArmRates, ClusterSums, HealthCheck, compare_versions, ratio_rate
from analytics.warehouse import Warehouse
from tests.unit.console.conftest import Console, console_settings

TYPE = "missing_knowledge"
PAGES = ("/dashboards", "/dashboards/rates", "/dashboards/comparison")
DLQ_COLUMNS = ("source_topic", "partition", "offset", "ts", "raw_b64", "error")


def _seed(warehouse: Warehouse) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows = []
    for version, users, problems in (("model_v1", 40, 12), ("model_v2", 30, 3)):
        for i in range(users):
            ts = start + timedelta(minutes=i)
            problem = i < problems
            rows.append([
                f"{version}-c{i}", f"{version}-u{i}", "standard", version, ts, ts, 3, [], i == 0,
                "Risk" if problem else "Accept", [TYPE] if problem else [], 0, 0, 0, False, 0.0, 1,
            ])  # fmt: skip
    warehouse.insert("conversations", rows, column_names=CONVERSATION_COLUMNS)
    now = datetime.now(UTC)
    dlq = [["llm.turns", 0, k, now, "e30=", "ts: missing"] for k in range(4)]
    warehouse.insert("dead_letters", dlq, column_names=DLQ_COLUMNS)


def _arm(rate: float, users: int) -> ClusterSums:
    positives = rate * users
    return ClusterSums(users, users, positives, users, positives, positives)


def _record_comparison(warehouse: Warehouse) -> None:
    pair = ArmRates(ratio_rate(_arm(0.3, 2000)), ratio_rate(_arm(0.05, 2000)))
    result = compare_versions({TYPE: pair}, {}, HealthCheck(0.42, 0.002, ()))
    record_look(warehouse, result, new="model_v2", prev="model_v1", ts=datetime.now(UTC))


def test_pages_need_a_login(console: Console) -> None:
    for path in PAGES:
        response = console.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login"


def test_system_accounts_are_refused(console: Console) -> None:
    console.login("trainer")
    assert console.client.get("/dashboards").status_code == 403


def test_overview_numbers_match_the_warehouse(console: Console) -> None:
    _seed(console.warehouse)
    client = console.login("lena")
    page = client.get("/dashboards")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert '<svg class="chart"' in page.text
    assert "<script" not in page.text
    assert 'href="/dashboards"' in page.text  # linked from the nav
    captured = console.warehouse.query(
        "SELECT count() FROM pool WHERE status = 'captured'"
    ).result_rows[0][0]
    assert f'id="pool-captured">{captured}<' in page.text
    dlq = console.warehouse.count("dead_letters")
    assert dlq == 4
    assert f'id="dlq-total">{dlq}<' in page.text
    assert 'id="lag-na"' in page.text


def test_rates_match_a_direct_query(console: Console) -> None:
    _seed(console.warehouse)
    client = console.login("lena")
    page = client.get("/dashboards/rates")
    assert page.status_code == 200
    section = page.text.split(f'id="metric-problem:{TYPE}"', 1)[1].split("</section>", 1)[0]
    assert "<svg" in section
    assert "<polygon" in section  # the interval band
    direct = console.warehouse.query(
        "SELECT model_version, count(), countIf(has(qa_problem_types, {t:String})) "
        "FROM conversations FINAL GROUP BY model_version",
        {"t": TYPE},
    ).result_rows
    for version, served, problems in direct:
        row = re.search(rf'data-version="{version}">(.*?)</tr>', section, re.S)
        assert row is not None, version
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1])
        assert cells[1:4] == [str(served), str(problems), f"{problems / served * 100:.2f}%"]


def test_comparison_shows_the_latest_look(console: Console) -> None:
    client = console.login("lena")
    assert 'id="no-look"' in client.get("/dashboards/comparison").text
    _record_comparison(console.warehouse)
    page = client.get("/dashboards/comparison")
    assert page.status_code == 200
    payload = console.warehouse.query(
        "SELECT decision, JSONExtractFloat(payload, 'targets', {t:String}, 'new', 'rate') "
        "FROM comparisons FINAL",
        {"t": TYPE},
    ).result_rows[0]
    assert f'id="overall">{payload[0]}<' in page.text
    row = re.search(rf'data-metric="{TYPE}">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert f"{payload[1] * 100:.2f}%" in row[1]
    assert 'id="srm">0.42<' in page.text
    assert 'id="multiple-exposure">0.20%<' in page.text
    assert '<svg class="chart"' in page.text


def test_lag_comes_from_the_provider(console: Console, tmp_path: Path) -> None:
    app = create_console(
        warehouse=console.warehouse,
        settings=console_settings(tmp_path),
        lag_provider=lambda: {"llm.turns": 7, "llm.qa": 5},
    )
    with TestClient(app, base_url="http://testserver") as client:
        other = Console(client, console.warehouse, console.keys, console.sample_id)
        page = other.login("ari").get("/dashboards")
    assert 'id="lag-total">12<' in page.text


def test_charts_escape_text_and_handle_no_data() -> None:
    series = [Series("<v1>", (Point(0, 0.1, 0.05, 0.2), Point(3600, 0.2, 0.1, 0.3)))]
    svg = str(line_chart(series, title="a & b", x_format=str))
    assert svg.startswith("<svg")
    assert "&lt;v1&gt;" in svg
    assert "a &amp; b" in svg
    assert "no data" in str(line_chart([], title="t", x_format=str))
    assert "no data" in str(bar_chart([], title="t"))
    bars = str(bar_chart([("problem", 3), ("captured", 0)], title="pool"))
    assert bars.count("<rect") == 2
    forest = str(interval_chart([Estimate("x", -0.1, -0.2, 0.0, "solved_candidate")], title="d"))
    assert 'class="est solved_candidate"' in forest
