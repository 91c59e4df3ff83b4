"""``loraloop compare``: both spellings of the versions, and errors instead of n = 0 decisions."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.exceptions import WarehouseLockedError
from analytics.warehouse import Warehouse
from loraloop.cli import app

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CONVERSATION = ("conversation_id", "user_id", "model_version", "first_ts", "last_ts")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def seeded(isolated_env: Path) -> Path:
    """A migrated warehouse in which base and model_v1 served conversations (no exposure)."""
    warehouse = Warehouse.connect(dsn=f"chdb://{isolated_env / 'warehouse'}", database="loraloop")
    try:
        warehouse.migrate(text_ttl_days=3650)
        rows = [[f"c{i}", f"u{i}", "base" if i % 2 else "model_v1", T0, T0] for i in range(6)]
        warehouse.insert("conversations", rows, column_names=CONVERSATION)
    finally:
        warehouse.close()
    return isolated_env


@pytest.mark.parametrize(
    "versions",
    [["model_v2", "model_v1"], ["--new", "model_v2", "--prev", "model_v1"]],
    ids=["positional", "options"],
)
def test_a_missing_data_dir_is_an_error_and_is_not_created(
    runner: CliRunner, isolated_env: Path, tmp_path: Path, versions: list[str]
) -> None:
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["compare", *versions, "--data-dir", str(missing)])
    assert result.exit_code == 1, result.output
    assert "does not exist" in result.output
    assert "--data-dir" in result.output
    assert "Unknown table" not in result.output
    assert not missing.exists()


def test_versions_are_required_in_one_spelling_or_the_other(
    runner: CliRunner, isolated_env: Path
) -> None:
    result = runner.invoke(app, ["compare", "--new", "model_v2"])
    assert result.exit_code == 1
    assert "--new NEW --prev PREV" in result.output
    twice = runner.invoke(app, ["compare", "model_v2", "model_v1", "--new", "model_v3"])
    assert twice.exit_code == 1
    assert "given twice" in twice.output


def test_unknown_versions_list_the_known_ones(runner: CliRunner, seeded: Path) -> None:
    result = runner.invoke(app, ["compare", "model_v9", "model_v1", "--share", "50"])
    assert result.exit_code == 1, result.output
    assert "model_v9" in result.output
    assert "base (3 conversations)" in result.output
    assert "model_v1 (3 conversations)" in result.output
    assert "decision" not in result.output
    # Checked before a missing rollout asks for --share.
    no_share = runner.invoke(app, ["compare", "model_v9", "model_v1"])
    assert "--share" not in no_share.output
    assert "versions with traffic" in no_share.output


def test_no_decision_is_printed_from_no_exposed_conversations(
    runner: CliRunner, seeded: Path
) -> None:
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["compare", "model_v1", "base", "--share", "50", *extra])
        assert result.exit_code == 1, result.output
        assert "no exposed conversation" in result.output
        assert "decision:" not in result.output
        assert "proceed" not in result.output


def test_an_unmigrated_warehouse_says_there_is_no_traffic(
    runner: CliRunner, isolated_env: Path
) -> None:
    (isolated_env / "warehouse").mkdir(parents=True)
    result = runner.invoke(app, ["compare", "model_v2", "model_v1", "--share", "50"])
    assert result.exit_code == 1, result.output
    assert "holds no conversations yet" in result.output
    assert "Unknown table" not in result.output


@pytest.mark.parametrize(
    "command", [["compare", "model_v1", "base", "--share", "50"], ["train", "--dry-run"]]
)
def test_a_store_held_by_up_names_its_pid(
    runner: CliRunner, seeded: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    def locked(*_args: object, **_kwargs: object) -> Warehouse:
        msg = "the embedded warehouse is held by another process"
        raise WarehouseLockedError(msg)

    monkeypatch.setattr(Warehouse, "from_settings", locked)
    stack = {"bootstrap": "127.0.0.1:1", "web_url": "http://127.0.0.1:2", "pid": os.getpid()}
    stack |= {"data_dir": str(seeded), "started_at": T0.isoformat()}
    (seeded / "stack.json").write_text(json.dumps(stack))
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert f"belongs to `loraloop up` (pid {os.getpid()})" in result.output
    assert "stop it first" in result.output
    assert "check LORALOOP_CLICKHOUSE_DSN" not in result.output
