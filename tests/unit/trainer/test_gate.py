"""The behavioural gate's rule over paired counts, its tally, its prompts and its summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer.behaviour import (
    BehaviourCounts,
    GatePrompt,
    Judged,
    Source,
    decide,
    report,
    tally,
)
from trainer.config import GateConfig
from trainer.evalset import EvalPrompt, EvaluationSet
from trainer.gate import gate_prompts
from trainer.judging import PairedCounts
from trainer.mirror import gate_summary
from trainer.rollout import claimed_only, training_evidence

TYPE = "over_promise"


def _counts(fixed: int, broken: int = 0, both_pass: int = 0, both_fail: int = 0) -> PairedCounts:
    return PairedCounts(fixed=fixed, broken=broken, both_pass=both_pass, both_fail=both_fail)


def _behaviour(
    per_type: dict[str, PairedCounts],
    *,
    baseline: PairedCounts | None = None,
    targeted: tuple[str, ...] = (TYPE,),
) -> BehaviourCounts:
    pooled = PairedCounts()
    for counts in per_type.values():
        pooled = PairedCounts(
            fixed=pooled.fixed + counts.fixed,
            broken=pooled.broken + counts.broken,
            both_pass=pooled.both_pass + counts.both_pass,
            both_fail=pooled.both_fail + counts.both_fail,
        )
    return BehaviourCounts(
        targeted=frozenset(targeted),
        per_type=per_type,
        pooled=pooled,
        baseline=baseline or _counts(0, both_pass=10),
    )


def test_an_improving_type_with_a_steady_baseline_passes() -> None:
    verdict = decide(_behaviour({TYPE: _counts(6, both_fail=2)}), GateConfig())
    assert verdict.passed, verdict.reasons
    assert verdict.decisive == [TYPE]
    assert any(r.startswith(f"{TYPE}: pass rate 0% -> 75%") for r in verdict.reasons)
    assert any(r.startswith("pooled:") and r.endswith("improved") for r in verdict.reasons)
    assert any("non-inferior" in r for r in verdict.reasons)


def test_too_few_unseen_prompts_fail_with_a_clear_reason() -> None:
    verdict = decide(_behaviour({TYPE: _counts(4)}), GateConfig())
    assert not verdict.passed
    assert verdict.decisive == []
    assert (
        "no trained problem type (over_promise) has 5 or more judged unseen" in verdict.reasons[0]
    )
    assert f"{TYPE}: only 4 judged unseen prompts (< 5): reported, not decisive" in verdict.reasons


def test_small_n_whose_p_value_is_too_large_fails() -> None:
    # 4 of 5 fixed, none broken: +80 %, but four discordant prompts give p = 1/16 at best.
    config = GateConfig(min_unseen_prompts=3)
    verdict = decide(_behaviour({TYPE: _counts(4, both_fail=1)}), config)
    assert not verdict.passed
    [reason] = [r for r in verdict.reasons if r.startswith(f"{TYPE}:")]
    assert "McNemar p=0.0625" in reason
    assert reason.endswith("not improved (p > 0.05); not claimed")


def test_a_gain_below_the_margin_fails_even_when_significant() -> None:
    # 6 fixed over 40 prompts: p = 1/64, but only +15 %.
    verdict = decide(_behaviour({TYPE: _counts(6, both_pass=10, both_fail=24)}), GateConfig())
    assert not verdict.passed
    assert any("not improved (gain below 20%)" in r for r in verdict.reasons)


def test_the_gain_margin_is_inclusive() -> None:
    # 2 of 10 more passes is exactly the 20 % margin (float 0.6 - 0.4 is a hair below 0.2).
    counts = _counts(2, both_pass=4, both_fail=4)
    config = GateConfig(behaviour_alpha=0.5)
    assert decide(_behaviour({TYPE: counts}), config).passed


def test_a_broken_baseline_fails() -> None:
    baseline = _counts(0, broken=6, both_pass=14)
    verdict = decide(_behaviour({TYPE: _counts(6)}, baseline=baseline), GateConfig())
    assert not verdict.passed
    [reason] = [r for r in verdict.reasons if r.startswith("baseline:")]
    assert "regressed (drop above 10%, significantly worse at 0.05)" in reason


def test_a_small_baseline_drop_within_the_margin_passes() -> None:
    baseline = _counts(0, broken=1, both_pass=19)  # -5 %, p_worse = 0.5
    assert decide(_behaviour({TYPE: _counts(6)}, baseline=baseline), GateConfig()).passed


def test_no_baseline_prompts_skip_the_baseline_check_with_a_note() -> None:
    verdict = decide(_behaviour({TYPE: _counts(6)}, baseline=PairedCounts()), GateConfig())
    assert verdict.passed
    assert "baseline check skipped" in verdict.reasons[-1]


def test_a_decisive_type_that_does_not_improve_is_not_claimed_and_the_rest_ships() -> None:
    per_type = {TYPE: _counts(8), "wrong_CTA_timing": _counts(0, both_fail=8)}
    verdict = decide(_behaviour(per_type, targeted=tuple(per_type)), GateConfig())
    assert verdict.passed, verdict.reasons
    assert verdict.decisive == ["over_promise", "wrong_CTA_timing"]
    assert verdict.claimed == ["over_promise"]
    [reason] = [r for r in verdict.reasons if r.startswith("wrong_CTA_timing:")]
    assert reason.endswith("not improved (gain below 20%, p > 0.05); not claimed")


def test_no_claimed_type_fails_the_gate() -> None:
    per_type = {TYPE: _counts(2, both_fail=7), "wrong_CTA_timing": _counts(1, both_fail=8)}
    verdict = decide(_behaviour(per_type, targeted=tuple(per_type)), GateConfig())
    assert not verdict.passed
    assert verdict.claimed == []
    assert verdict.reasons[0].startswith("no decisive type (over_promise, wrong_CTA_timing)")


def test_holm_claims_types_in_p_order_at_shrinking_levels() -> None:
    # The demo's first cycle: p = 0.0078, 0.011 and 0.25 against 0.05/3, 0.05/2 and 0.05.
    per_type = {
        "wrong_objection_handling": _counts(7, both_fail=5),
        "missing_knowledge": _counts(9, broken=1, both_fail=22),
        TYPE: _counts(2, both_fail=7),
    }
    verdict = decide(_behaviour(per_type, targeted=tuple(per_type)), GateConfig())
    assert verdict.passed, verdict.reasons
    assert verdict.claimed == ["missing_knowledge", "wrong_objection_handling"]
    [reason] = [r for r in verdict.reasons if r.startswith(f"{TYPE}:")]
    assert reason.endswith("not improved (p > 0.05); not claimed")


def test_holm_stops_at_the_first_p_above_its_level() -> None:
    # p = 1/32 for both: the smaller name's level is 0.025 (fails), so neither is claimed,
    # though each alone would pass at 0.05.
    per_type = {TYPE: _counts(5), "wrong_CTA_timing": _counts(5)}
    verdict = decide(_behaviour(per_type, targeted=tuple(per_type)), GateConfig())
    assert verdict.claimed == []
    assert not verdict.passed
    alone = decide(_behaviour({TYPE: _counts(5)}), GateConfig())
    assert alone.claimed == [TYPE]


def test_alpha_one_turns_the_holm_bar_off_too() -> None:
    per_type = {TYPE: _counts(0, both_fail=5), "wrong_CTA_timing": _counts(0, both_fail=5)}
    config = GateConfig(behaviour_alpha=1.0, min_pass_rate_gain=0.0)
    verdict = decide(_behaviour(per_type, targeted=tuple(per_type)), config)
    assert verdict.claimed == ["over_promise", "wrong_CTA_timing"]
    assert verdict.passed


def test_holm_controls_false_claims_under_the_null() -> None:
    # Two types with 6 discordant prompts each, fixed/broken by a fair coin: the chance of
    # claiming either is the family-wise error, which Holm keeps under alpha.
    from itertools import product
    from math import comb

    config = GateConfig(min_pass_rate_gain=0.0)
    false_claim = 0.0
    for fixed_a, fixed_b in product(range(7), repeat=2):
        weight = comb(6, fixed_a) * comb(6, fixed_b) / 4096
        per_type = {TYPE: _counts(fixed_a, 6 - fixed_a), "rude": _counts(fixed_b, 6 - fixed_b)}
        if decide(_behaviour(per_type, targeted=tuple(per_type)), config).claimed:
            false_claim += weight
    assert 0 < false_claim <= config.behaviour_alpha


def test_a_decisive_type_made_significantly_worse_fails_the_gate() -> None:
    per_type = {TYPE: _counts(9), "wrong_CTA_timing": _counts(0, broken=6, both_fail=2)}
    verdict = decide(_behaviour(per_type, targeted=tuple(per_type)), GateConfig())
    assert not verdict.passed
    assert verdict.claimed == [TYPE]
    assert verdict.reasons[0].startswith("wrong_CTA_timing: broken 6, fixed 0 of 8 unseen")


def test_untrained_or_thin_types_are_reported_not_decisive() -> None:
    per_type = {TYPE: _counts(6), "rude": _counts(0, broken=9), "slow": _counts(0, broken=2)}
    verdict = decide(_behaviour(per_type, targeted=(TYPE, "slow")), GateConfig())
    assert verdict.decisive == [TYPE]
    assert "rude: not trained this cycle: reported, not decisive" in verdict.reasons
    assert "slow: only 2 judged unseen prompts (< 5): reported, not decisive" in verdict.reasons
    # The pooled set still counts every unseen prompt: 6 fixed, 11 broken is no improvement.
    assert not verdict.passed
    assert any(r.startswith("pooled:") for r in verdict.reasons[:1])


def test_a_cycle_without_problems_has_a_regression_only_gate_that_cannot_ship() -> None:
    verdict = decide(BehaviourCounts(targeted=frozenset(), baseline=_counts(0, 0, 9)), GateConfig())
    assert not verdict.passed
    assert "no problem type was trained this cycle" in verdict.reasons[0]
    assert any("non-inferior" in r for r in verdict.reasons)


def _prompt(source: Source, types: tuple[str, ...] = (), family: str = "f") -> GatePrompt:
    return GatePrompt([{"role": "user", "content": "hi"}], family, types, source)


def _judged(prompt: GatePrompt, old: set[str] | None, new: set[str] | None) -> Judged:
    return Judged(
        prompt=prompt,
        parent_reply="p" * 300,
        candidate_reply="c",
        parent_problems=None if old is None else frozenset(old),
        candidate_problems=None if new is None else frozenset(new),
    )


def test_tally_counts_per_type_pooled_baseline_and_skipped() -> None:
    both = ("over_promise", "wrong_CTA_timing")
    judged = [
        _judged(_prompt(Source.HELDOUT, both), set(both), {"wrong_CTA_timing"}),
        _judged(_prompt(Source.EVALUATION, ("over_promise",)), {"over_promise"}, {"rude"}),
        _judged(_prompt(Source.EVALUATION, ("over_promise",)), None, set()),
        _judged(_prompt(Source.BASELINE, ("missing_knowledge",)), set(), {"rude"}),
    ]
    counts = tally(judged, targeted=["over_promise"])
    assert counts.per_type["over_promise"] == _counts(2)
    assert counts.per_type["wrong_CTA_timing"] == _counts(0, both_fail=1)
    # The first prompt still shows one of its own types; the second shows none of its own.
    assert counts.pooled == _counts(1, both_fail=1)
    # A baseline prompt passes only when no problem at all was found.
    assert counts.baseline == _counts(0, broken=1)
    assert counts.skipped == 1

    section = report(judged, counts, decide(counts, GateConfig())).model_dump(mode="json")
    assert section["paired"]["over_promise"] == {
        "prompts": 2, "fixed": 2, "broken": 0, "unchanged": 0, "parent_pass_rate": 0.0,
        "candidate_pass_rate": 1.0, "p_value": 0.25,
    }  # fmt: skip
    assert section["baseline"]["p_worse"] == 0.5
    assert section["skipped"] == 1
    first, _, skipped, base = section["prompts"]
    assert (first["source"], first["parent_pass"], first["candidate_pass"]) == (
        "heldout",
        False,
        False,
    )
    assert len(first["parent_reply"]) == 200
    assert skipped["parent_pass"] is None
    assert (base["parent_pass"], base["candidate_pass"]) == (True, False)


def _row(split: str, tier: str, types: list[str], sample_id: str, **extra: Any) -> dict[str, Any]:
    messages = [
        {"role": "user", "content": f"question {sample_id}"},
        {"role": "assistant", "content": "answer"},
    ]
    return {
        "split": split, "tier": tier, "problem_types": types, "sample_id": sample_id,
        "messages": messages, **extra,
    }  # fmt: skip


def test_gate_prompts_come_from_heldout_evaluation_and_regression() -> None:
    rows = [
        _row("train", "problem", ["over_promise"], "p1"),
        _row("train", "core_baseline", ["missing_knowledge"], "b1"),
        _row("heldout_problem", "problem", ["over_promise"], "p2", family="fam-a"),
        _row("baseline_regression", "core_baseline", [], "b2", family="fam-b"),
    ]
    evaluation = EvaluationSet(
        prompts=tuple(
            EvalPrompt(
                family=f"eval-{t}",
                problem_types=(t,),
                messages=({"role": "user", "content": f"eval {t}"},),
            )
            for t in ("over_promise", "wrong_CTA_timing")
        )
    )
    prompts = gate_prompts(rows, evaluation)
    # A baseline sample's labels do not make its type a trained problem type.
    assert prompts.targeted == {"over_promise"}
    assert [(p.family, p.source) for p in prompts.unseen] == [
        ("fam-a", Source.HELDOUT),
        ("eval-over_promise", Source.EVALUATION),
    ]
    assert prompts.unseen[0].messages == [{"role": "user", "content": "question p2"}]
    assert prompts.unseen[1].messages == [{"role": "user", "content": "eval over_promise"}]
    [base] = prompts.baseline
    assert (base.family, base.source, base.problem_types) == ("fam-b", Source.BASELINE, ())


@pytest.mark.parametrize("behaviour", [True, False])
def test_gate_summary_lifts_the_paired_numbers(behaviour: bool) -> None:
    gate: dict[str, Any] = {"passed": True, "reasons": ["r"], "numbers": {"heldout_loss": 1.0}}
    if behaviour:
        gate["behaviour"] = {
            "paired": {TYPE: {"prompts": 5}}, "pooled": {"prompts": 5}, "baseline": {},
            "skipped": 0, "targeted": [TYPE], "decisive": [TYPE], "prompts": [{"x": 1}],
        }  # fmt: skip
    summary = gate_summary(gate)
    assert (summary["passed"], summary["reasons"]) == (True, ["r"])
    assert summary.get("behaviour") == gate.get("behaviour")
    if behaviour:
        assert summary["paired"] == {TYPE: {"prompts": 5}}
        assert summary["pooled"] == {"prompts": 5}
        assert "prompts" not in summary
    else:
        assert summary == gate


def test_alpha_one_turns_the_significance_bars_off() -> None:
    config = GateConfig(behaviour_alpha=1.0, min_pass_rate_gain=0.0, min_unseen_prompts=1)
    unchanged = _behaviour({TYPE: _counts(0, both_fail=2)}, baseline=_counts(0, both_pass=2))
    assert decide(unchanged, config).passed
    broken = _behaviour({TYPE: _counts(0, both_fail=2)}, baseline=_counts(0, broken=1))
    assert not decide(broken, config.model_copy(update={"max_baseline_drop": 0.5})).passed


def test_the_version_evidence_carries_the_claimed_types_and_filters_proposals(
    tmp_path: Path,
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"trained_sample_ids": ["s1"]}))
    assert training_evidence(tmp_path).claimed_types is None  # an older version: no filter
    gate = {"passed": True, "behaviour": {"claimed": ["missing_knowledge"]}}
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    evidence = training_evidence(tmp_path)
    assert evidence.claimed_types == frozenset({"missing_knowledge"})
    solved = {"missing_knowledge": {"v": 1}, "over_promise": {"v": 2}}
    assert claimed_only(solved, evidence.claimed_types, version="model_v2") == {
        "missing_knowledge": {"v": 1}
    }
    assert claimed_only(solved, None, version="model_v2") == solved
