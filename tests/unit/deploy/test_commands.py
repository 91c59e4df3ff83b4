"""Every loraloop service in docker-compose.yml runs a real command of the CLI."""

from __future__ import annotations

from typing import Any

import pytest
from typer.main import get_command

from loraloop.cli import app


def _parse(root: Any, args: list[str]) -> list[str]:
    """Parse ``args`` as the CLI would; returns the command path. Raises on a bad one.

    (typer ships its own click, so groups are recognised by their ``commands``.)
    """
    path: list[str] = []
    command = root
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        assert name in command.commands, f"`loraloop {' '.join([*path, name])}` does not exist"
        command = command.commands[name]
        path.append(name)
    with command.make_context(" ".join(["loraloop", *path]), list(args)):
        pass
    return path


def test_every_loraloop_service_runs_an_existing_command(
    loraloop_services: dict[str, dict[str, Any]],
) -> None:
    root = get_command(app)
    assert len(loraloop_services) >= 6
    for name, service in loraloop_services.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: use the list form of command"
        assert _parse(root, command), name


def test_the_parser_refuses_unknown_commands_and_options() -> None:
    root = get_command(app)
    with pytest.raises(AssertionError, match="does not exist"):
        _parse(root, ["no-such-command"])
    with pytest.raises(Exception, match="No such option") as error:
        _parse(root, ["web", "--no-such-option"])
    assert type(error.value).__name__ == "NoSuchOption"
    assert _parse(root, ["web", "--port", "1"]) == ["web"]
