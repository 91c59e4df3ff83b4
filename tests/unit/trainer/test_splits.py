"""Splits by prompt family: nothing held out is trained under a paraphrase, draws rotate,
the manifest's id lists partition the kept samples, evaluation families stay apart,
unsolved problems are down-weighted, weights are influence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from tests.trainer_fixtures import WHEN, baseline_sample, make_pool, problem_sample
from trainer.config import DatasetConfig
from trainer.dataset import build_dataset
from trainer.evalset import EvalPrompt, EvaluationSet
from trainer.families import jaccard, normalize_prompt, trigrams
from trainer.records import ChatMessage, PoolSample, Tier
from trainer.splits import draw_count, heldout_families, regression_families

TYPES = ("over_promise", "wrong_CTA_timing", "missing_knowledge")
PHRASINGS = ("Tell me about {t}.", "Could you tell me about {t}?", "What about {t}, exactly?")
TOPICS = [
    "refund rules", "weekend classes", "the certificate", "job placement", "mentor calls",
    "installments", "the final project", "group discounts", "live lectures", "study plans",
    "course books", "the trial week", "office hours", "alumni events", "exam retakes",
    "team licences", "offline videos", "the beginner track",
]  # fmt: skip


def _sample(sid: str, prompt: str, reply: str, tier: Tier, types: Iterable[str] = ()) -> PoolSample:
    return PoolSample(
        sample_id=sid,
        status=tier,
        problem_types=list(types),
        messages=[ChatMessage(role="user", content=prompt)],
        corrected_response=reply,
        updated_at=WHEN,
    )


def paraphrased_pool() -> list[PoolSample]:
    """Problem topics asked three ways each (one answer per topic), and a baseline."""
    pool = [baseline_sample(i, Tier.CORE_BASELINE) for i in range(30)]
    for t, topic in enumerate(TOPICS):
        types = [TYPES[t % 3]] + ([TYPES[(t + 1) % 3]] if t % 4 == 0 else [])
        reply = f"Here is what {topic} involves, honestly and without promises."
        for p, phrasing in enumerate(PHRASINGS):
            pool.append(
                _sample(f"p{t:02d}{p}", phrasing.format(t=topic), reply, Tier.PROBLEM, types)
            )
    return pool


def _split_ids(manifest: dict[str, Any], split: str) -> set[str]:
    return {
        sid for f in manifest["families"].values() if f["split"] == split for sid in f["sample_ids"]
    }


def test_trained_and_heldout_share_no_family_nor_near_duplicate_prompt() -> None:
    built = build_dataset(paraphrased_pool(), config=DatasetConfig(heldout_fraction=0.3))
    train = [r for r in built.rows if r["split"] == "train"]
    held = [r for r in built.rows if r["split"] == "heldout_problem"]
    assert held
    assert {r["family"] for r in train}.isdisjoint({r["family"] for r in held})
    train_grams = [trigrams(normalize_prompt(r["messages"][0]["content"])) for r in train]
    train_replies = {normalize_prompt(r["messages"][-1]["content"]) for r in train}
    for row in held:
        grams = trigrams(normalize_prompt(row["messages"][0]["content"]))
        assert all(jaccard(grams, other) < 0.8 for other in train_grams)
        assert normalize_prompt(row["messages"][-1]["content"]) not in train_replies
    # Paraphrases of a topic are one family, held out or trained together.
    families: dict[str, set[tuple[str, str]]] = {}
    for row in built.rows:
        if row["tier"] == "problem":
            families.setdefault(row["sample_id"][:3], set()).add((row["family"], row["split"]))
    assert all(len(pairs) == 1 for pairs in families.values())


def test_every_type_with_two_families_keeps_its_share_held_out_and_trained() -> None:
    config = DatasetConfig(heldout_fraction=0.3)
    built = build_dataset(paraphrased_pool(), config=config)
    families = built.manifest["families"].values()
    for problem_type in TYPES:
        of_type = [f for f in families if problem_type in f["problem_types"]]
        held = [f for f in of_type if f["split"] == "heldout_problem"]
        assert len(held) >= draw_count(len(of_type), config.heldout_fraction)
        assert any(f["split"] == "train" for f in of_type)


def test_the_heldout_families_rotate_from_cycle_to_cycle() -> None:
    pool = paraphrased_pool()
    held = [
        frozenset(
            build_dataset(pool, config=DatasetConfig(), rotation=rotation).manifest[
                "heldout_sample_ids"
            ]
        )
        for rotation in range(4)
    ]
    assert len(set(held)) > 1
    again = build_dataset(pool, config=DatasetConfig(), rotation=2).manifest
    assert frozenset(again["heldout_sample_ids"]) == held[2]  # the same rotation, the same draw


def test_no_family_is_held_out_that_a_type_with_one_family_needs() -> None:
    for rotation in range(8):
        held = heldout_families(
            {"a": ["x"], "b": ["x", "y"], "c": ["x"]}, fraction=0.5, seed=0, rotation=rotation
        )
        assert held == {"a", "c"}  # b is y's only family: it trains


def test_regression_families_skip_those_past_the_sample_cap() -> None:
    sizes = {"huge": 50, **{f"f{i}": 3 for i in range(9)}}
    for rotation in range(6):
        drawn = regression_families(sizes, fraction=0.2, at_most=7, seed=0, rotation=rotation)
        assert len(drawn) == 2  # round(0.2 * 10) families
        assert "huge" not in drawn
        assert sum(sizes[f] for f in drawn) <= 7
    assert regression_families(sizes, fraction=0.2, at_most=2, seed=0, rotation=0) == set()


def evaluation_set() -> EvaluationSet:
    prompt = EvalPrompt(
        family="eval-refund",
        problem_types=("over_promise",),
        messages=(ChatMessage(role="user", content="Tell me about refund rules!"),),
    )
    alone = EvalPrompt(
        family="eval-unseen",
        problem_types=("missing_knowledge",),
        messages=(ChatMessage(role="user", content="Is there a student discount in March?"),),
    )
    return EvaluationSet(version="v1", prompts=(prompt, alone))


def test_manifest_id_lists_partition_the_kept_samples() -> None:
    pool = paraphrased_pool()
    core = baseline_sample(3, Tier.CORE_BASELINE)
    pool.append(core.model_copy(update={"sample_id": "dup", "status": Tier.SECONDARY_BASELINE}))
    built = build_dataset(pool, config=DatasetConfig(), evaluation=evaluation_set())
    manifest = built.manifest
    lists = [
        manifest[key]
        for key in (
            "trained_sample_ids",
            "heldout_sample_ids",
            "regression_sample_ids",
            "evaluation_excluded_ids",
        )
    ]
    kept = set(manifest["source_sample_ids"]) - set(manifest["duplicates_dropped"])
    assert sum(len(ids) for ids in lists) == len(kept)
    assert set().union(*lists) == kept
    assert manifest["duplicates_dropped"] == {"dup": "b003"}
    assert all(ids == sorted(ids) for ids in lists)
    assert manifest["trained_sample_ids"] == sorted(
        r["sample_id"] for r in built.rows if r["split"] == "train"
    )
    assert {r["sample_id"] for r in built.rows}.isdisjoint(manifest["evaluation_excluded_ids"])
    for split, key in (("train", 0), ("heldout_problem", 1), ("baseline_regression", 2)):
        assert _split_ids(manifest, split) == set(lists[key])


def test_samples_of_an_evaluation_family_are_put_aside() -> None:
    built = build_dataset(paraphrased_pool(), config=DatasetConfig(), evaluation=evaluation_set())
    manifest = built.manifest
    assert manifest["evaluation_excluded_ids"] == ["p000", "p001", "p002"]
    family = manifest["families"]["eval-refund"]
    assert family["split"] == "evaluation"
    assert family["sample_ids"] == ["p000", "p001", "p002"]
    assert "tell me about refund rules" in family["prompts"]
    unseen = manifest["families"]["eval-unseen"]
    assert (unseen["split"], unseen["sample_ids"]) == ("evaluation", [])
    assert unseen["problem_types"] == ["missing_knowledge"]
    assert manifest["evaluation_set"] == {
        "version": "v1",
        "prompts": 2,
        "families": ["eval-refund", "eval-unseen"],
    }
    assert all(r["family"] not in {"eval-refund", "eval-unseen"} for r in built.rows)


def _problem(index: int, times_trained: int) -> PoolSample:
    return problem_sample(index, "over_promise").model_copy(update={"times_trained": times_trained})


def test_a_problem_unsolved_after_k_cycles_trains_at_a_lower_weight() -> None:
    config = DatasetConfig(heldout_fraction=0, baseline_eval_fraction=0)
    pool = [*make_pool(baselines=30, problems=0), _problem(0, 0), _problem(1, 1), _problem(2, 2)]
    built = build_dataset(pool, config=config)
    weights = {r["sample_id"]: r["weight"] for r in built.rows}
    assert weights["p000"] == weights["p001"]
    assert weights["p002"] == pytest.approx(weights["p000"] * config.unsolved_weight_factor)
    assert set(built.manifest["downweighted"]) == {"p002"}
    assert "unsolved after 2 cycles" in built.manifest["downweighted"]["p002"]
    assert "p002" in built.manifest["trained_sample_ids"]  # still trained


def test_the_problem_cap_counts_influence_with_downweighted_problems() -> None:
    config = DatasetConfig(problem_weight=1.0, heldout_fraction=0, baseline_eval_fraction=0)
    pool = [*make_pool(baselines=6, problems=0), *(_problem(i, 3 * (i % 2)) for i in range(12))]
    built = build_dataset(pool, config=config)
    share = built.manifest["effective_weight_share"]["problem"]
    assert share == pytest.approx(config.problem_share_cap, abs=1e-5)
    problem = [r for r in built.rows if r["tier"] == "problem"]
    total = sum(r["weight"] for r in built.rows)
    assert sum(r["weight"] for r in problem) / total == pytest.approx(0.3, abs=1e-5)
    assert len({r["weight"] for r in problem}) == 2


def test_rows_name_their_family() -> None:
    built = build_dataset(make_pool(), config=DatasetConfig())
    for row in built.rows:
        assert built.manifest["families"][row["family"]]["split"] == row["split"]
        assert row["sample_id"] in built.manifest["families"][row["family"]]["sample_ids"]
