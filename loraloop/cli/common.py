"""Shared CLI helpers: consoles, the data-dir option, settings loading, failing cleanly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

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


def require_warehouse(settings: Settings) -> None:
    """Fail unless the embedded store exists: a read-only command never creates one.

    A ClickHouse server (``LORALOOP_CLICKHOUSE_DSN=http://...``) is not checked here; its
    connection errors say what to do.
    """
    dsn = settings.effective_clickhouse_dsn
    if not settings.embedded_warehouse:
        return
    store = Path(dsn.removeprefix("chdb://"))
    if store.is_dir():
        return
    where = "does not exist" if not settings.data_dir.exists() else "holds no warehouse"
    fail(
        f"the data directory {settings.data_dir} {where} (no {store}): pass the --data-dir "
        "that `loraloop up` or `loraloop demo` ran on (or set LORALOOP_DATA_DIR), or start "
        "a stack there first with `loraloop up --data-dir DIR`"
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error line on stderr and exit with ``code``."""
    # One line however long (soft_wrap), so a redirected or grepped error stays whole; the
    # message is text, never markup (a "[model_v2]" in it is printed as is).
    console.stderr_console.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    raise SystemExit(code)
