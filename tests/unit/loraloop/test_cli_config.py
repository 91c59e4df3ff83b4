"""``loraloop config`` prints every settings group, and the docs' tables match the code."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loraloop.cli import app
from loraloop.cli.config import GROUPS, group_class, variables

REPO = Path(__file__).resolve().parents[3]
#: Every top-level package of the project (a new one is scanned without a change here).
PACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")
#: Settings nested in the top-level Settings (printed under its keys, not GROUPS).
NESTED = {"Settings", "StreamSettings", "KafkaSettings", "WarehouseSettings"}
ROW = re.compile(r"^\| `(LORALOOP_[A-Z0-9_]+)`[^|]*\| ([^|]*) \|", re.MULTILINE)
FIRST_CODE = re.compile(r"`([^`]*)`")
SEE_CONFIG = "see `loraloop config`"


def _settings_classes() -> set[str]:
    """Every ``class X(BaseSettings)`` in the packages' source."""
    found = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id == "BaseSettings" for b in node.bases
                ):
                    found.add(node.name)
    return found


def test_every_settings_class_is_a_group() -> None:
    grouped = {group_class(key).__name__ for key in GROUPS} | NESTED
    assert _settings_classes() - grouped == set()


def test_config_prints_every_group_with_secrets_masked(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORALOOP_CONSOLE__ADMIN_KEY", "sekrit-admin-key")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    for key in (*GROUPS, "stream", "kafka", "warehouse", "effective_clickhouse_dsn"):
        assert key in printed, key
    assert printed["dataset"]["core_weight"] > 0
    assert "sekrit-admin-key" not in result.output


def test_markdown_lists_every_variable(isolated_env: Path) -> None:
    result = CliRunner().invoke(app, ["config", "--markdown"])
    assert result.exit_code == 0
    for name in ("LORALOOP_STREAM__BATCH_SIZE", "LORALOOP_TRAINER__PERIOD_S", "LORALOOP_GATE__"):
        assert f"`{name}" in result.output


def _rows(doc: str) -> list[tuple[str, str]]:
    return ROW.findall((REPO / doc).read_text(encoding="utf-8"))


def test_the_readme_table_matches_the_defaults(isolated_env: Path) -> None:
    defaults = {v.name: v.default for v in variables()}
    rows = _rows("README.md")
    assert len(rows) >= 8
    for name, cell in rows:
        assert name in defaults, f"README names {name}, which no settings class reads"
        if cell.startswith(SEE_CONFIG):  # a long default (a lexicon, a taxonomy)
            continue
        code = FIRST_CODE.search(cell)
        written = code.group(1) if code else cell.strip()
        assert written == defaults[name], f"README: {name} default {written!r}"


def test_deploy_tables_name_real_variables(isolated_env: Path) -> None:
    defaults = {v.name: v.default for v in variables()}
    for name, cell in _rows("docs/deploy.md"):
        assert name in defaults, f"docs/deploy.md names {name}, which no settings class reads"
        if cell.startswith("`"):
            written = FIRST_CODE.search(cell)
            assert written is not None
            assert written.group(1) == defaults[name], f"docs/deploy.md: {name}"
