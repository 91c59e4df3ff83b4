"""``loraloop samples`` talks to the console's JSON API."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from loraloop.cli.samples import samples_app
from tests.unit.console.conftest import Console, cli_as


@pytest.fixture
def cli(console: Console, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return cli_as(console, monkeypatch, "lena")


def test_list_label_show(cli: CliRunner, console: Console) -> None:
    url = ["--url", "http://testserver"]
    listed = cli.invoke(samples_app, ["list", "--status", "captured", *url])
    assert listed.exit_code == 0, listed.output
    assert console.sample_id in listed.output
    labelled = cli.invoke(
        samples_app,
        [
            "label", console.sample_id, "--acceptance", "Risk", "--risk-level", "high",
            "--problem-type", "over_promise", "--corrected-response", "No promises.", *url,
        ],
    )  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    assert "problem" in labelled.output
    shown = cli.invoke(samples_app, ["show", console.sample_id, *url])
    assert '"to_status": "problem"' in shown.output


def test_refusal_is_a_clean_error(cli: CliRunner, console: Console) -> None:
    result = cli.invoke(
        samples_app,
        ["approve", console.sample_id, "--from", "captured", "--url", "http://testserver"],
    )
    assert result.exit_code == 1
    assert "409" in result.output or "403" in result.output
