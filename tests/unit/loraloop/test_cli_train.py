"""``loraloop train --dry-run`` describes the pool and what is missing, never a traceback."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import trainer.service
from analytics.warehouse import Warehouse
from loraloop.cli import app
from tests.cli_commands import Written, check_arguments, resolve, words_of
from tests.trainer_fixtures import make_pool
from trainer.pool import PoolRead


@pytest.fixture
def migrated(isolated_env: Path) -> Path:
    warehouse = Warehouse.connect(dsn=f"chdb://{isolated_env / 'warehouse'}", database="loraloop")
    try:
        warehouse.migrate(text_ttl_days=3650)
    finally:
        warehouse.close()
    return isolated_env


def _pool(monkeypatch: pytest.MonkeyPatch, baselines: int, problems: int) -> None:
    def read_pool(*_args: Any, **_kwargs: Any) -> PoolRead:
        return PoolRead(samples=make_pool(baselines, problems))

    monkeypatch.setattr(trainer.service, "read_pool", read_pool)


def test_problems_without_a_baseline_are_described_not_a_traceback(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _pool(monkeypatch, baselines=0, problems=4)
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(app, ["train", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    for tier in ("core_baseline", "secondary_baseline", "candidate_baseline", "problem"):
        assert tier in result.output
    assert "no dataset can be built yet" in result.output
    assert "missing: baseline samples" in result.output
    assert "loraloop samples approve SAMPLE_ID --from problem" in result.output
    assert "missing: problem samples" not in result.output


def test_an_empty_pool_says_to_label_first(migrated: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "missing: problem samples" in result.output
    assert "loraloop samples label" in result.output
    assert "missing: baseline samples" in result.output


def test_the_commands_it_suggests_are_real(migrated: Path) -> None:
    said = CliRunner().invoke(app, ["train", "--dry-run"]).output
    suggested = re.findall(r"`(loraloop [^`]*)`", said)
    assert len(suggested) >= 3
    for line in suggested:
        written = Written("train --dry-run", line, words_of(line))
        command, path, rest = resolve(written.words)
        assert path, line
        check_arguments(command, rest, written)


def test_a_buildable_pool_shows_tiers_and_splits(
    migrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pool(monkeypatch, baselines=24, problems=12)
    result = CliRunner().invoke(app, ["train", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "splits per problem type" in result.output
    assert "core_baseline" in result.output
    assert "missing:" not in result.output


def test_a_missing_data_dir_is_not_created(isolated_env: Path, tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    result = CliRunner().invoke(app, ["train", "--dry-run", "--data-dir", str(missing)])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not missing.exists()


def test_a_real_cycle_on_problems_alone_fails_saying_what_to_add(
    migrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pool(monkeypatch, baselines=0, problems=4)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "missing: baseline samples" in result.output
    assert "failed: problem samples but no baseline sample" in result.output
