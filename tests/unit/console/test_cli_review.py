"""``loraloop samples list`` shows which samples need re-review (issue 16 #5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from analytics import pool
from analytics.rows import COLUMNS
from loraloop.cli.samples import REVIEW_MARK, samples_app
from loraloop.lifecycle import DEFAULT_TAXONOMY, Role
from tests.pool_seed import T0, seed_sample
from tests.unit.console.conftest import Console, cli_as

URL = ("--url", "http://testserver")


@pytest.fixture
def cli(console: Console, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return cli_as(console, monkeypatch, "lena")


def test_list_marks_a_conversation_changed_after_labelling(
    cli: CliRunner, console: Console
) -> None:
    wh = console.warehouse
    label = {
        "acceptance": "Risk", "problem_types": ["over_promise"], "risk_level": "high",
        "corrected_response": "No promises.",
    }  # fmt: skip
    for sid in (console.sample_id, seed_sample(wh, "c2")):
        pool.label(wh, sid, label, actor="lena", roles=[Role.LABELLER], taxonomy=DEFAULT_TAXONOMY)
    wh.insert(
        "turns",
        [["c1-t1", T0 + timedelta(seconds=1), "c1", "u1", 1, "assistant", "rewritten", "m", False]],
        column_names=COLUMNS["turns"],
    )

    listed = cli.invoke(samples_app, ["list", *URL])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.output.splitlines() if "smp-c" in line}
    assert REVIEW_MARK in rows["smp-c1"]
    assert REVIEW_MARK not in rows["smp-c2"]
    assert "text of turn 1 (event c1-t1) changed" in " ".join(listed.output.split())

    only = cli.invoke(samples_app, ["list", "--needs-review", *URL])
    assert only.exit_code == 0, only.output
    assert "smp-c1" in only.output
    assert "smp-c2" not in only.output
