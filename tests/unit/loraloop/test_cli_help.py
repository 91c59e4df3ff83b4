"""Every command's help reads plainly: no ``<bool>`` flags, no ``{file}`` usage lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from analytics.warehouse import Warehouse
from loraloop.cli import app


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "loraloop" for c in COMMANDS])
def test_help_has_no_bool_types_or_braces(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "<list[" not in result.output  # a repeatable option shows <str>...
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage


def test_usage_names_arguments_in_capitals() -> None:
    result = CliRunner().invoke(app, ["produce", "--help"])
    assert "Usage: loraloop produce [OPTIONS] FILE" in result.output
    compare = CliRunner().invoke(app, ["compare", "--help"])
    assert "[NEW] [PREV]" in compare.output


def test_up_help_names_all_seven_parts() -> None:
    text = " ".join(CliRunner().invoke(app, ["up", "--help"]).output.split())
    for part in ("broker", "worker", "ClickHouse", "console", "gateway", "trainer", "rollout"):
        assert part in text, part


def test_status_table_title_is_one_line(isolated_env: Path) -> None:
    store = isolated_env / "a-rather-long-directory-name-for-the-warehouse" / "warehouse"
    warehouse = Warehouse.connect(dsn=f"chdb://{store}", database="loraloop")
    try:
        warehouse.migrate(text_ttl_days=3650)
    finally:
        warehouse.close()
    result = CliRunner().invoke(app, ["status", "--data-dir", str(store.parent)])
    assert result.exit_code == 0, result.output
    assert f"warehouse chdb://{store.resolve()}\n" in result.output
    assert "\x1b" not in result.output
