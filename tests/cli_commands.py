"""Commands as written in the docs: parse a ``loraloop ...`` line and check it against the CLI.

Used by the README walk (``tests/e2e/test_readme_commands.py``) and by the tests of
commands the CLI itself suggests (``tests/unit/loraloop/test_cli_train.py``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.main
from typer.core import TyperArgument, TyperOption

from loraloop.cli import app

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
ROOT = typer.main.get_command(app)


@dataclass(frozen=True)
class Written:
    """One ``$ loraloop ...`` line: where it is and its words after ``loraloop``."""

    doc: str
    line: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.doc}: {self.line}"


def words_of(line: str) -> tuple[str, ...]:
    command = line.split(" #", 1)[0].strip().removesuffix("&").strip()  # `... &`: in background
    command = re.sub(r"\[(--[^\]]+)\]", r"\1", command)  # `[--print-ddl]`: optional, shown
    return tuple(shlex.split(command)[1:])


def written_commands(docs: tuple[str, ...]) -> list[Written]:
    """Every ``$ loraloop ...`` line of the ``console`` blocks of ``docs``."""
    found = []
    for doc in docs:
        path = REPO / doc
        if not path.exists():
            continue
        for block in BLOCK.findall(path.read_text(encoding="utf-8")):
            for raw in block.splitlines():
                line = raw.strip().removeprefix("$ ").strip()
                if line.startswith("loraloop "):
                    found.append(Written(doc, line, words_of(line)))
    return found


def resolve(words: tuple[str, ...]) -> tuple[Any, tuple[str, ...], list[str]]:
    """The command a line names, its path, and the words left for it."""
    command: Any = ROOT
    path: tuple[str, ...] = ()
    rest = list(words)
    while rest and rest[0] in getattr(command, "commands", {}):
        command = command.commands[rest[0]]
        path = (*path, rest.pop(0))
    return command, path, rest


def check_arguments(command: Any, rest: list[str], where: Written) -> None:
    """Each option exists (with its value), required ones are given, arguments fit."""
    options = {o: p for p in command.params if isinstance(p, TyperOption) for o in p.opts}
    options.update({o: p for p in command.params for o in getattr(p, "secondary_opts", [])})
    arguments = [p for p in command.params if isinstance(p, TyperArgument)]
    for required in {id(p): p for p in options.values() if p.required}.values():
        given = any(w.partition("=")[0] in required.opts for w in rest)
        assert given, f"{where}: {required.opts[0]} is required"
    positional = []
    words = iter(rest)
    for word in words:
        if word.startswith("--"):
            name, _, value = word.partition("=")
            assert name in options or name == "--help", f"{where}: no option {name}"
            option = options.get(name)
            if option is not None and not option.is_flag and not value:
                assert next(words, None) is not None, f"{where}: {name} needs a value"
        else:
            positional.append(word)
    most = sum(max(1, a.nargs) if a.nargs != -1 else len(positional) for a in arguments)
    least = sum(1 for a in arguments if a.required)
    assert least <= len(positional) <= most, f"{where}: {len(positional)} arguments"
