"""What ``loraloop demo`` prints: readable lines, reasons for every failure, a closing hint.

Each test goes through the function that formats a line, with the numbers and reason
strings the trainer writes (trainer/behaviour.py), so a reader never sees a Python dict,
an unexplained symbol, a failure without its reason or an empty table.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from loraloop.cli.demo_run.summary import cycle_renderables, cycle_table
from loraloop.cli.demo_run.text import (
    NO_GATE_REASON,
    closing_hint,
    console_line,
    gate_failure_reason,
    gate_line,
    no_version_reason,
    not_shipped_line,
    pool_line,
    rollout_reason,
    seed_line,
    traffic_line,
)

PAIRED = {
    "missing_knowledge": {"prompts": 32, "fixed": 9, "broken": 1, "unchanged": 22,
                          "p_value": 0.0107},
    "over_promise": {"prompts": 9, "fixed": 2, "broken": 0, "unchanged": 7, "p_value": 0.25},
}  # fmt: skip

FAILED_REASONS = [
    "no decisive type (missing_knowledge) improved on unseen prompts: nothing is fixed "
    "beyond the training prompts",
    "over_promise: only 4 judged unseen prompts (< 8): reported, not decisive",
    "missing_knowledge: pass rate 50% -> 69% over 36 unseen prompts (fixed 7, broken 0, "
    "gain +19%, McNemar p=0.00781): not improved (gain below 20%); not claimed",
    "baseline: pass rate 90% -> 90% over 10 prompts (fixed 0, broken 0, McNemar-worse p=1): "
    "non-inferior",
    "diagnostic, not decisive: held-out problem loss 2.1000 -> 1.2000",
]
"""A failed verdict as trainer/behaviour.py ``decide`` writes it: failures, then notes."""


def _plain(renderable: Any) -> str:
    """What a renderable reads as in a terminal without colour."""
    out = Console(width=200, color_system=None, record=True)
    out.print(renderable)
    return out.export_text()


def _reprless(text: str) -> None:
    assert "{" not in text, text
    assert "}" not in text, text
    assert "Counter(" not in text, text


def test_traffic_line_is_words_not_dicts() -> None:
    line = traffic_line(
        40, Counter({"base": 30, "model_v1": 10}), 12, 10,
        Counter({"missing_knowledge": 6, "over_promise": 4}),
    )  # fmt: skip
    _reprless(line)
    assert line == (
        "  40 conversations (base 30, model_v1 10), 12 captured, 10 labelled "
        "(missing_knowledge 6, over_promise 4)"
    )


def test_traffic_line_without_problems_names_none() -> None:
    assert traffic_line(5, Counter({"base": 5}), 0, 0, Counter()) == (
        "  5 conversations (base 5), 0 captured, 0 labelled"
    )


def test_pool_and_seed_lines_are_words_not_dicts() -> None:
    pool = pool_line(2, {"problem": 14, "core_baseline": 18})
    assert pool == "cycle 2: training on the pool (core_baseline 18, problem 14)"
    seed = {"conversations": 12, "labelled_problems": 10, "moved_to_core": 10,
            "approver": "demo-approver"}  # fmt: skip
    assert seed_line(seed) == (
        "  seed baseline: 12 conversations, 10 labelled as problems, "
        "10 moved to core by demo-approver"
    )
    assert seed_line(seed | {"moved_to_core": 0, "approver": None}).endswith(
        "none moved to core (no --approve-as)"
    )


def test_gate_line_of_a_pass_reads_as_text() -> None:
    gate = {"passed": True, "paired": PAIRED, "claimed": ["missing_knowledge"], "reasons": []}
    line = gate_line(1, "model_v1", gate)
    _reprless(line)
    assert line == (
        "cycle 1: model_v1 passed the gate; missing_knowledge fixed 9 / broken 1 of 32 "
        "(p 0.011); over_promise fixed 2 / broken 0 of 9 (p 0.25); claimed: missing_knowledge"
    )


def test_a_failed_gate_always_says_why() -> None:
    gate = {"passed": False, "paired": PAIRED, "claimed": [], "reasons": FAILED_REASONS}
    line = gate_line(2, "model_v2", gate)
    assert line.startswith(
        "cycle 2: model_v2 failed the gate: no decisive type (missing_knowledge) improved "
        "on unseen prompts"
    )
    assert "missing_knowledge not improved (gain +19%; gain below 20%)" in line
    assert "non-inferior" not in line
    assert "diagnostic" not in line
    assert "reported, not decisive" not in line


def test_a_failed_gate_with_no_reason_lines_says_so() -> None:
    assert gate_failure_reason({"passed": False, "reasons": []}) == NO_GATE_REASON
    assert gate_line(3, "model_v3", {"passed": False}).endswith(NO_GATE_REASON)


def test_a_failed_gate_of_only_notes_gives_the_first_line() -> None:
    only_notes = ["no judged baseline regression prompts: baseline check skipped"]
    assert gate_failure_reason({"reasons": only_notes}) == only_notes[0]


def test_no_version_reason_has_no_none() -> None:
    assert no_version_reason("dry_run", None) == "no version trained (dry_run)"
    assert no_version_reason("no_data", "no problem samples") == (
        "no version trained (no_data: no problem samples)"
    )


def _unshipped(**extra: Any) -> dict[str, Any]:
    return {
        "cycle": 2, "parent": "base", "version": "model_v2", "shipped": False,
        "reason": "gate failed: gain +19% below 20%", "gate": {"passed": False},
        "seen": {}, "unseen": {},
    } | extra  # fmt: skip


def test_not_shipped_line_names_the_cycle_reason_and_what_follows() -> None:
    cycle = _unshipped()
    assert not_shipped_line(cycle, last=False) == (
        "cycle 2 did not ship: gate failed: gain +19% below 20%; the next cycle goes on from base"
    )
    assert not_shipped_line(cycle, last=True).endswith("; it was the last cycle")


def test_a_cycle_that_did_not_ship_prints_a_line_not_an_empty_table() -> None:
    cycle = _unshipped()
    assert cycle_table(cycle) is None
    printed = cycle_renderables(cycle, last=False)
    assert not any(isinstance(r, Table) for r in printed)
    assert [_plain(r).strip() for r in printed] == [not_shipped_line(cycle, last=False)]


def _metric(prev: float, new: float, verdict: str) -> dict[str, Any]:
    return {
        "prev": {"rate": prev}, "new": {"rate": new}, "verdict": verdict,
        "difference_interval": [new - prev - 0.1, new - prev + 0.1],
    }  # fmt: skip


def test_cycle_table_names_targets_and_guardrails_in_words() -> None:
    comparison = {
        "targets": {"missing_knowledge": _metric(0.6, 0.3, "improved")},
        "guardrails": {"complaint_rate": _metric(0.1, 0.1, "unchanged")},
    }
    cycle = {"cycle": 1, "parent": "base", "version": "model_v1", "shipped": True,
             "rollout": {"comparison": comparison}}  # fmt: skip
    printed = cycle_renderables(cycle, last=False)
    text = "".join(_plain(r) for r in printed)
    assert "⚑" not in text
    assert "kind" in text
    assert "target" in text
    assert "guardrail" in text
    assert "did not ship" not in text


def test_a_rolled_back_cycle_prints_its_table_and_why() -> None:
    comparison = {"targets": {"missing_knowledge": _metric(0.6, 0.7, "regressed")}}
    cycle = _unshipped(reason="rollout rolled_back: regressed", rollout={"comparison": comparison})
    printed = cycle_renderables(cycle, last=True)
    assert isinstance(printed[0], Table)
    assert _plain(printed[-1]).strip() == (
        "cycle 2 did not ship: rollout rolled_back: regressed; it was the last cycle"
    )


def test_closing_hint_says_how_to_browse_after_the_demo() -> None:
    hint = closing_hint(Path(".loraloop/demo"))
    assert "loraloop up --data-dir .loraloop/demo" in hint
    assert "'runs/my demo'" in closing_hint(Path("runs/my demo"))
    assert "while the demo runs" in console_line("http://127.0.0.1:8000")


def test_up_takes_the_data_dir_the_hint_names() -> None:
    from typer.testing import CliRunner

    from loraloop.cli import app

    done = CliRunner().invoke(app, ["up", "--help"])
    assert done.exit_code == 0, done.output
    assert "--data-dir" in done.output


def test_the_demo_turns_hugging_face_progress_bars_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    from loraloop.cli.demo import HF_QUIET_ENVIRONMENT, quiet_hugging_face

    for name in HF_QUIET_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    try:
        quiet_hugging_face()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert are_progress_bars_disabled()
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        enable_progress_bars()


def test_rollout_reason_says_where_the_canary_stopped_and_why() -> None:
    looks = [
        {"look": 1, "step_percent": 25.0, "action": "advance", "reason": "advanced to 50 %"},
        {"look": 2, "step_percent": 50.0, "action": "stay", "reason": "nothing solved yet"},
    ]
    assert rollout_reason("running", looks) == (
        "the canary stayed at 50 % after 2 looks: nothing solved yet"
    )
    assert rollout_reason("held", looks[:1]).startswith("the canary was held at 25 % after 1 look:")
    back = [looks[0] | {"action": "roll_back", "reason": "over_promise regressed"}]
    assert rollout_reason("rolled_back", back) == (
        "rolled back at 25 % (look 1): over_promise regressed"
    )
    assert rollout_reason("running", []) == "the rollout ended running before its first look"


def test_the_overview_says_why_not_shipped_in_a_few_words_and_the_line_below_says_all() -> None:
    from loraloop.cli.demo_run.summary import overview_table

    reason = "gate failed: no decisive type improved on unseen prompts: " + "x " * 200
    summary = {
        "model": "m",
        "seconds": 1.0,
        "cycles": [{"cycle": 2, "shipped": False, "reason": reason, "gate": {}}],
    }
    out = Console(width=200, record=True)
    out.print(overview_table(summary))
    text = out.export_text()
    assert "no: gate failed" in text
    assert "decisive" not in text  # the full reason is the 'did not ship' line, not a cell
