"""The demo's per-cycle numbers: seen/unseen rates from traffic tallies, and report.html tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loraloop.cli.demo_run.cycle import generalisation
from loraloop.cli.demo_run.report import write_report


def _totals() -> dict[str, Any]:
    return {
        "groups": {
            "base": {
                "seen": {"conversations": 40, "problems": {"missing_knowledge": 20}},
                "unseen": {"conversations": 10, "problems": {"missing_knowledge": 6}},
            },
            "model_v1": {
                "seen": {"conversations": 50, "problems": {"missing_knowledge": 5}},
                "unseen": {"conversations": 20},
            },
        }
    }


def test_generalisation_gives_each_versions_rate_per_group() -> None:
    out = generalisation(_totals(), prev="base", new="model_v1", types=["missing_knowledge"])
    seen, unseen = out["seen"]["missing_knowledge"], out["unseen"]["missing_knowledge"]
    assert seen["prev"] == pytest.approx(0.5)
    assert seen["new"] == pytest.approx(0.1)
    assert unseen["prev"] == pytest.approx(0.6)
    assert unseen["new"] == 0.0
    assert (unseen["prev_conversations"], unseen["new_conversations"]) == (10, 20)


def test_generalisation_without_traffic_is_none_not_zero() -> None:
    out = generalisation({}, prev="base", new="model_v1", types=["over_promise"])
    assert out["unseen"]["over_promise"]["new"] is None


def _cycle() -> dict[str, Any]:
    rates = generalisation(_totals(), prev="base", new="model_v1", types=["missing_knowledge"])
    return {
        "cycle": 1, "parent": "base", "version": "model_v1", "shipped": False,
        "reason": "rollout rolled_back: over_promise regressed",
        "dataset": {"counts": {"per_tier": {"core_baseline": 3}}, "ids": {"trained_sample_ids": 7},
                    "heldout_families": ["fam-abc"]},
        "gate": {"passed": True, "reasons": ["improved"],
                 "paired": {"missing_knowledge": {"prompts": 8, "fixed": 6, "broken": 0,
                                                  "unchanged": 2, "p_value": 0.0156}}},
        "production": _totals(), "rollout": {"looks": [], "traffic": _totals()},
        "promotions": {"proposed": 2, "approved": 2, "pending": 0}, **rates,
    }  # fmt: skip


def test_report_shows_tables_not_python_reprs(tmp_path: Path) -> None:
    summary = {"model": "m", "approver": "a", "seconds": 1.0,
               "seed_baseline": {"moved_to_core": 3}, "cycles": [_cycle()]}  # fmt: skip
    write_report(summary, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "{'" not in page
    assert "': " not in page
    assert "<td>missing_knowledge</td><td>8</td><td>6</td><td>0</td>" in page
    assert "not shipped: rollout rolled_back" in page
    assert "fam-abc" in page
    assert (tmp_path / "cycle1_unseen.png").stat().st_size > 0


def test_report_renders_nested_values_and_a_failed_gates_reason(tmp_path: Path) -> None:
    failed = _cycle() | {
        "version": None, "shipped": False, "reason": "no version trained (no_data)",
        "gate": {"passed": False, "paired": {}, "reasons": []}, "rollout": None,
    }  # fmt: skip
    gated = _cycle() | {
        "cycle": 2, "shipped": False, "reason": "gate failed: see below",
        "gate": {"passed": False, "paired": {}, "reasons": [
            "baseline: pass rate 90% -> 60% over 10 prompts (fixed 0, broken 3, "
            "McNemar-worse p=0.125): regressed (drop above 5%)",
            "diagnostic, not decisive: held-out problem loss 2.1000 -> 1.2000",
        ]},
    }  # fmt: skip
    failed["dataset"] = {"counts": {"per_tier": {"core_baseline": {"en": 2, "zh": 1}}},
                         "ids": {"trained_sample_ids": [1, 2]}}  # fmt: skip
    summary = {"model": "m", "approver": None, "seconds": 1.0, "cycles": [failed, gated],
               "seed_baseline": {"moved_to_core": 0, "by_intent": {"pricing": 2}}}  # fmt: skip
    write_report(summary, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "{" not in page.split("</style>", 1)[1]
    assert "[1" not in page
    assert "None" not in page
    assert "en 2, zh 1" in page
    assert "pricing 2" in page
    assert "Cycle 1: no version vs base" in page
    assert "failed: baseline: pass rate 90% -&gt; 60%" in page
    assert "regressed (drop above 5%)</p>" in page
