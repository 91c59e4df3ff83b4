"""``loraloop demo --fast`` end to end: the loop runs, and its summary matches the warehouse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from analytics.warehouse import Warehouse

TIMEOUT_S = 480
STDOUT_FILE = "demo_stdout.txt"


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
    (data / STDOUT_FILE).write_text(done.stdout, encoding="utf-8")
    return data


def test_output_is_words_with_a_closing_hint(demo_dir: Path) -> None:
    """No Python dict in a progress line, no Hugging Face bar, and how to browse afterwards."""
    out = (demo_dir / STDOUT_FILE).read_text(encoding="utf-8")
    assert "{'" not in out
    assert "Counter(" not in out
    assert "it/s]" not in out
    assert "⚑" not in out
    assert "seed baseline:" in out
    assert f"loraloop up --data-dir {demo_dir}" in " ".join(out.split())  # rich wraps lines


def test_summary_structure(demo_dir: Path) -> None:
    summary = orjson.loads((demo_dir / "report" / "summary.json").read_bytes())
    assert summary["approver"] == "e2e-approver"
    assert summary["seed_baseline"]["moved_to_core"] > 0
    assert len(summary["cycles"]) >= 3
    for cycle in summary["cycles"]:
        assert {"passed", "paired"} <= set(cycle["gate"])
        assert {"unseen", "seen", "shipped", "reason"} <= set(cycle)
        assert cycle["shipped"] or cycle["reason"]
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
    gateway = summary["gateway"]  # every reply went through the gateway over HTTP
    assert gateway["url"].startswith("http://")
    assert gateway["requests"] == gateway["generated"] + gateway["cached"]
    assert 0 < gateway["generated"] < gateway["requests"]  # the reply cache answered repeats


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


def _rows(dataset_dir: Path) -> list[dict]:
    lines = (dataset_dir / "dataset.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def _first_user(row: dict) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def test_trained_and_heldout_never_share_a_family(demo_dir: Path) -> None:
    """Recomputed independently: no prompt family spans the train and held-out splits, and
    no trained prompt belongs to an evaluation (unseen) family of the scenario."""
    from loraloop.simulation.scenario import item_for_text, scenario_items
    from trainer.config import DatasetConfig
    from trainer.families import FamilyItem, assign_families
    from trainer.service_config import TrainerSettings

    items = scenario_items(99)
    datasets = sorted(TrainerSettings().datasets_root(demo_dir).glob("*/dataset.jsonl"))
    assert datasets, "no dataset was written"
    similarity = DatasetConfig().family_similarity
    for path in datasets:
        rows = _rows(path.parent)
        families = assign_families(
            [
                FamilyItem(r["sample_id"], _first_user(r), r["messages"][-1]["content"])
                for r in rows
            ],
            similarity=similarity,
        )
        by_split: dict[str, set[str]] = {}
        for row in rows:
            by_split.setdefault(row["split"], set()).add(families[row["sample_id"]])
        assert not by_split.get("train", set()) & by_split.get("heldout_problem", set()), path
        for row in rows:
            item = item_for_text(items, _first_user(row))
            assert item is None or not item.evaluation, (path, _first_user(row))
        manifest = orjson.loads((path.parent / "manifest.json").read_bytes())
        trained = {r["sample_id"] for r in rows if r["split"] == "train"}
        assert set(manifest["trained_sample_ids"]) == trained


def test_proposals_are_only_for_trained_samples(demo_dir: Path) -> None:
    from trainer.registry import Registry
    from trainer.service_config import TrainerSettings

    registry = Registry(TrainerSettings().registry_root(demo_dir))
    warehouse = Warehouse.connect(dsn=f"chdb://{demo_dir}/warehouse", database="loraloop")
    try:
        rows = warehouse.query(
            "SELECT sample_id, JSONExtractString(evidence, 'version') FROM sample_transitions "
            "FINAL WHERE proposal"
        ).result_rows
    finally:
        warehouse.close()
    for sample_id, version in rows:
        manifest = orjson.loads((registry.path(version) / "manifest.json").read_bytes())
        assert sample_id in manifest["trained_sample_ids"], (sample_id, version)


def test_a_rollback_leaves_no_pending_proposal(demo_dir: Path) -> None:
    from analytics.proposals import pending_proposals

    warehouse = Warehouse.connect(dsn=f"chdb://{demo_dir}/warehouse", database="loraloop")
    try:
        rolled_back = [
            str(v)
            for (v,) in warehouse.query(
                "SELECT DISTINCT version FROM rollouts WHERE decision = 'roll_back'"
            ).result_rows
        ]
        for version in rolled_back:
            assert pending_proposals(warehouse, version) == [], version
    finally:
        warehouse.close()
