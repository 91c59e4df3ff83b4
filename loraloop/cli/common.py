"""Shared CLI helpers: consoles, the data-dir option, settings loading, failing cleanly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, get_args

import typer
from rich.console import Console
from rich.markup import escape
from typer import _click as click  # typer 0.29 vendors click; its commands take this Context
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

from loraloop.exceptions import StackNotRunningError
from loraloop.settings import Settings

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse


@dataclass(frozen=True)
class _Consoles:
    stdout_console: Console
    stderr_console: Console


console = _Consoles(Console(), Console(stderr=True))

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: LORALOOP_DATA_DIR or ./.loraloop)."),
]


def _untyped_flags(params: list[Any]) -> list[Any]:
    """Leave a flag's type column empty: it takes no value, so ``<bool>`` misleads; a
    repeatable option shows one value's type, repeated (``<str>...``, not ``<list[str]>``)."""
    for param in params:
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        elif param.multiple:
            param.metavar = f"<{_item_type(param)}>..."
    return params


def _item_type(param: Any) -> str:
    """The type name of one value of a repeatable option (``str`` for ``list[str]``)."""
    args = get_args(getattr(getattr(param, "type_descriptor", None), "annotation", None))
    return str(getattr(args[0], "__name__", "value")) if args else "value"


class LoraloopCommand(TyperCommand):
    """A command whose help reads plainly: ``FILE`` in the usage line (not ``{file}``), and
    no ``<bool>`` type beside a flag."""

    def get_params(self, ctx: click.Context) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not isinstance(param, TyperArgument):
                continue
            name = (param.metavar or param.name or "").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class LoraloopGroup(TyperGroup):
    """A command group whose flags, too, show no ``<bool>`` type."""

    def get_params(self, ctx: click.Context) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


def plain_help(app: typer.Typer) -> None:
    """Give ``app``, its commands and its sub-apps the plain help of ``LoraloopCommand``."""
    if app.info.cls in (None, TyperGroup) or isinstance(app.info.cls, DefaultPlaceholder):
        app.info.cls = LoraloopGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = LoraloopCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            plain_help(group.typer_instance)


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


def open_warehouse(settings: Settings, *, migrate: bool = True) -> Warehouse:
    """The warehouse; a store held by a running ``loraloop up`` fails saying which and how on."""
    # Imported here: the CLI loads its layers only in the commands that use them.
    from analytics.exceptions import WarehouseLockedError
    from analytics.warehouse import Warehouse

    try:
        return Warehouse.from_settings(settings, migrate=migrate)
    except WarehouseLockedError as e:
        fail(_held_by_stack(settings) or str(e))


def _held_by_stack(settings: Settings) -> str | None:
    from streams.stack import read_stack

    try:
        pid = read_stack(settings).pid
    except StackNotRunningError:
        return None
    return (
        f"the embedded warehouse in {settings.data_dir} belongs to `loraloop up` (pid {pid}), "
        f"which owns it while it runs: stop it first (Ctrl-C in its terminal, or kill -INT "
        f"{pid}) and run this again, or point LORALOOP_CLICKHOUSE_DSN at a ClickHouse server"
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error line on stderr and exit with ``code``."""
    # One line however long (soft_wrap), so a redirected or grepped error stays whole; the
    # message is text, never markup (a "[model_v2]" in it is printed as is).
    console.stderr_console.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    raise SystemExit(code)
