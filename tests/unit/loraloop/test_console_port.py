"""``loraloop up --port``: the console's port is the one asked for, and a busy one is refused."""

from __future__ import annotations

import socket

import pytest
import typer

from loraloop.cli.stack import console_port

HOST = "127.0.0.1"


def test_zero_picks_a_free_port_and_a_free_one_is_kept() -> None:
    picked = console_port(0, HOST)
    assert picked > 0
    assert console_port(picked, HOST) == picked


def test_a_busy_port_is_refused_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((HOST, 0))
        held.listen()
        busy = held.getsockname()[1]
        with pytest.raises((typer.Exit, SystemExit)):
            console_port(busy, HOST)
    said = capsys.readouterr()
    assert f"port {busy}" in said.out + said.err
    assert "--port 0" in said.out + said.err
