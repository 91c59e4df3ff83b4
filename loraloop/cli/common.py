"""Shared CLI helpers: consoles, the data-dir option, settings loading, failing cleanly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from loraloop.settings import Settings


@dataclass(frozen=True)
class _Consoles:
    stdout_console: Console
    stderr_console: Console


console = _Consoles(Console(), Console(stderr=True))

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: LORALOOP_DATA_DIR or ./.loraloop)."),
]


def load_settings(data_dir: Path | None) -> Settings:
    """Settings from the environment, with ``--data-dir`` applied."""
    return Settings().with_data_dir(data_dir)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error line on stderr and exit with ``code``."""
    console.stderr_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise SystemExit(code)
