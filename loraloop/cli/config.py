"""``loraloop config``: every settings group, effective values or a table of defaults.

``GROUPS`` lists each pydantic-settings class of the project once, under the key its
values print under; the README's and docs/deploy.md's tables of variables are checked
against ``variables()`` (``tests/unit/loraloop/test_cli_config.py``), and a test finds
every ``BaseSettings`` class in the source tree and fails when one is missing here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from loraloop.cli.common import DataDir, console, load_settings
from loraloop.settings import Settings

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

#: A default longer than this is left to ``loraloop config`` in the table.
_MAX_DEFAULT_CHARS = 48
_NESTED = "__"


#: Each component's settings class beside the top-level ``Settings`` (which holds
#: ``stream``, ``kafka`` and ``warehouse``), keyed as ``loraloop config`` prints them.
#: Named, not imported: like every layer the CLI uses, a class is imported when printed.
GROUPS: dict[str, tuple[str, str]] = {
    "detectors": ("detectors.config", "DetectorSettings"),
    "console": ("analytics.console.config", "ConsoleSettings"),
    "dataset": ("trainer.config", "DatasetConfig"),
    "train": ("trainer.config", "TrainConfig"),
    "gate": ("trainer.config", "GateConfig"),
    "trainer": ("trainer.service_config", "TrainerSettings"),
    "rollout": ("trainer.rollout_config", "RolloutSettings"),
    "rollout_service": ("trainer.rollout_service_config", "RolloutServiceSettings"),
    "rates": ("analytics.rate_config", "RateQuerySettings"),
    "compare": ("analytics.stats.config", "ComparisonSettings"),
    "demo": ("loraloop.simulation.config", "SimulationSettings"),
    "gateway": ("gateway.config", "GatewaySettings"),
}


def group_class(key: str) -> type[BaseSettings]:
    """The settings class printed under ``key``."""
    module, name = GROUPS[key]
    found: type[BaseSettings] = getattr(importlib.import_module(module), name)
    return found


def group_settings(key: str, settings: Settings) -> BaseSettings:
    """The group's settings as the environment and ``--data-dir`` give them."""
    cls = group_class(key)
    if "data_dir" in cls.model_fields:
        return cls(data_dir=settings.data_dir)
    return cls()


def effective(settings: Settings) -> dict[str, Any]:
    """Every group's effective values, JSON-safe, secrets masked."""
    data: dict[str, Any] = json.loads(settings.model_dump_json())
    data["effective_clickhouse_dsn"] = settings.effective_clickhouse_dsn
    for key in GROUPS:
        data[key] = json.loads(group_settings(key, settings).model_dump_json())
    return data


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its default as the tables write it, its meaning."""

    name: str
    default: str
    meaning: str


def render_default(value: Any) -> str:
    """A default as the README writes it: ``empty``, ``true``, ``0.5``, ``10``, ``[...]``."""
    if value is None or value == "" or (isinstance(value, tuple | list | frozenset) and not value):
        return "empty"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, int | float | str | Path):
        return str(value)
    if isinstance(value, frozenset | set):
        value = sorted(value)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))


def _walk(model: type[BaseModel], prefix: str) -> Iterator[Variable]:
    for name, info in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _walk(annotation, env + _NESTED)
            continue
        yield Variable(env, render_default(_default(info)), (info.description or "").strip())


def _default(info: FieldInfo) -> Any:
    return info.get_default(call_default_factory=True, validated_data={})


def variables() -> list[Variable]:
    """Every environment variable loraloop reads, group by group, with its default."""
    classes: list[type[BaseSettings]] = [Settings, *(group_class(key) for key in GROUPS)]
    found = []
    for cls in classes:
        found += list(_walk(cls, str(cls.model_config.get("env_prefix", ""))))
    return found


def _markdown() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var in variables():
        default = var.default
        if len(default) > _MAX_DEFAULT_CHARS:
            default = "see `loraloop config`"
        elif default != "empty":
            default = f"`{default}`"
        meaning = var.meaning.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{var.name}` | {default} | {meaning} |")
    return "\n".join(lines)


def config(
    data_dir: DataDir = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print every variable with its default and meaning as a table."
        ),
    ] = False,
) -> None:
    """Print the effective settings of every group (secrets masked) as JSON."""
    if markdown:
        print(_markdown())
        return
    settings = load_settings(data_dir)
    console.stdout_console.print_json(json.dumps(effective(settings), default=str))
