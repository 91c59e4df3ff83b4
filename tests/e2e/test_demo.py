"""``loraloop demo --fast`` end to end: the loop runs, and its summary matches the warehouse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from analytics.warehouse import Warehouse

TIMEOUT_S = 240


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("demo")
    # `python -m loraloop demo`, registering the command if the CLI does not yet.
    code = (
        "import sys; from loraloop.cli import app, demo, main; "
        "'demo' in [c.name for c in app.registered_commands] or app.command('demo')(demo.demo); "
        "sys.argv = ['loraloop', *sys.argv[1:]]; main()"
    )
    args = ["demo", "--fast", "--approve-as", "e2e-approver", "--data-dir", str(data)]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return data


def test_summary_structure(demo_dir: Path) -> None:
    summary = orjson.loads((demo_dir / "report" / "summary.json").read_bytes())
    assert summary["approver"] == "e2e-approver"
    assert summary["seed_baseline"]["moved_to_core"] > 0
    assert len(summary["cycles"]) >= 2
    first = summary["cycles"][0]
    assert first["version"] == "model_v1"
    assert first["parent"] == "base"
    assert first["dataset"]["counts"]
    assert "passed" in first["gate"]
    comparison = first["rollout"]["comparison"]
    for metric in [*comparison["targets"].values(), *comparison["guardrails"].values()]:
        assert {"prev", "new", "verdict", "difference_interval"} <= set(metric)
        assert {"rate", "std_error", "conversations"} <= set(metric["new"])
    assert first["rollout"]["recomputed_check"] == []
    assert summary["warehouse_check"] == []


def test_summary_matches_warehouse_and_report_exists(demo_dir: Path) -> None:
    from loraloop.cli.demo_run.check import verify

    summary = orjson.loads((demo_dir / "report" / "summary.json").read_bytes())
    warehouse = Warehouse.connect(dsn=f"chdb://{demo_dir}/warehouse", database="loraloop")
    try:
        assert verify(warehouse, summary) == []
        approvals = warehouse.query(
            "SELECT count() FROM sample_transitions FINAL "
            "WHERE actor = 'e2e-approver' AND role = 'approver' AND NOT proposal"
        ).result_rows[0][0]
        assert approvals >= 3 * summary["seed_baseline"]["moved_to_core"]
    finally:
        warehouse.close()
    report = demo_dir / "report"
    assert (report / "report.html").stat().st_size > 0
    assert list(report.glob("*.png"))
