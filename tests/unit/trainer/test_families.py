"""Prompt families: paraphrases and shared answers cluster; evaluation prompts name theirs."""

from __future__ import annotations

import itertools
import random

import pytest

from trainer.families import (
    FamilyItem,
    assign_families,
    jaccard,
    near_duplicate_pairs,
    normalize_prompt,
    trigrams,
)

SIMILARITY = 0.8


def test_normalize_prompt_folds_width_case_punctuation_and_space() -> None:
    assert normalize_prompt("  How MUCH is it?!  ") == "how much is it"
    assert normalize_prompt("Ｈｏｗ　much，is it。") == "how much is it"
    assert normalize_prompt("「我们不能保证」\n工作") == "我们不能保证 工作"
    assert normalize_prompt("...") == ""


def test_paraphrases_cluster_and_other_questions_do_not() -> None:
    items = [
        FamilyItem("a", "How much does the course cost?"),
        FamilyItem("b", "how much does the course cost"),
        FamilyItem("c", "How much does this course cost?"),
        FamilyItem("d", "Can I get my money back after two weeks?"),
    ]
    families = assign_families(items, similarity=SIMILARITY)
    assert families["a"] == families["b"] == families["c"]
    assert families["d"] != families["a"]
    assert families["a"].startswith("fam-")


def test_identical_references_merge_different_prompts() -> None:
    answer = "Refunds are possible within 14 days of purchase."
    items = [
        FamilyItem("en", "Can I get a refund?", reference=answer),
        FamilyItem("zh", "可以退款吗？", reference=f"  {answer.upper()} "),
        FamilyItem("other", "Can I get a refund?!", reference="Something else entirely."),
        FamilyItem("alone", "What time do classes start?", reference=""),
        FamilyItem("blank", "When is the next intake?", reference=""),
    ]
    families = assign_families(items, similarity=SIMILARITY)
    assert families["en"] == families["zh"] == families["other"]  # "other" by its prompt
    assert families["alone"] != families["blank"]  # empty references never join


def test_an_evaluation_prompt_names_its_family_and_pulls_paraphrases_in() -> None:
    items = [
        FamilyItem("s1", "Could I ask for my money back?"),
        FamilyItem("s2", "Could I ask for my money back please?"),
        FamilyItem("s3", "What is the price of the pro plan?"),
        FamilyItem("e1", "could I ask for my money back", family_hint="refund-en-b"),
        FamilyItem("e2", "Rückerstattung möglich?", family_hint="refund-en-b"),
    ]
    families = assign_families(items, similarity=SIMILARITY)
    assert {families[k] for k in ("s1", "s2", "e1", "e2")} == {"refund-en-b"}
    assert families["s3"].startswith("fam-")


def test_family_ids_are_stable_and_independent_of_order() -> None:
    items = [FamilyItem(f"k{i}", f"Tell me about topic {i} in detail") for i in range(30)]
    forward = assign_families(items, similarity=SIMILARITY)
    backward = assign_families(list(reversed(items)), similarity=SIMILARITY)
    assert forward == backward


def test_keys_must_be_unique() -> None:
    with pytest.raises(ValueError, match="twice"):
        assign_families([FamilyItem("a", "x"), FamilyItem("a", "y")], similarity=SIMILARITY)


def test_prefix_filtered_pairs_equal_the_brute_force_pairs() -> None:
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    words = ["refund", "price", "course", "job", "lesson", "how", "much", "can", "i", "get"]
    prompts = sorted(
        {" ".join(rng.choice(words) for _ in range(rng.randint(2, 7))) for _ in range(300)}
    )
    grams = [trigrams(p) for p in prompts]
    for similarity in (0.5, 0.8, 1.0):
        expected = {
            (i, j)
            for i, j in itertools.combinations(range(len(prompts)), 2)
            if jaccard(grams[i], grams[j]) >= similarity
        }
        assert set(near_duplicate_pairs(prompts, similarity=similarity)) == expected
