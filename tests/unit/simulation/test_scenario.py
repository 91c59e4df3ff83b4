"""The scenario's families: two per intent and language, apart from each other."""

from __future__ import annotations

import itertools
import string
import unicodedata
from collections import Counter

import pytest

from loraloop.simulation import SimulationSettings
from loraloop.simulation.scenario import (
    PHRASINGS_PER_FAMILY,
    REPEAT_SUFFIX,
    Intent,
    ScenarioItem,
    evaluation_prompts,
    item_for_text,
    scenario_items,
)
from trainer.evalset import EvalPrompt

ITEMS = scenario_items(PHRASINGS_PER_FAMILY)
_PUNCTUATION = set(string.punctuation)


def normalized(text: str) -> str:
    """NFKC, case-folded, punctuation stripped, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(
        " " if c in _PUNCTUATION or unicodedata.category(c).startswith("P") else c for c in folded
    )
    return " ".join(kept.split())


def trigram_jaccard(left: str, right: str) -> float:
    grams = [{f" {t} "[i : i + 3] for i in range(len(t))} for t in (left, right)]
    union = grams[0] | grams[1]
    return len(grams[0] & grams[1]) / len(union) if union else 1.0


def test_every_intent_and_language_has_two_families_of_enough_phrasings() -> None:
    per_family = Counter(i.family for i in ITEMS)
    assert len(per_family) == len(Intent) * 2 * 2
    assert all(n >= 4 for n in per_family.values())
    per_intent = Counter((i.intent, i.lang) for i in ITEMS)
    assert all(n >= 8 for n in per_intent.values())
    assert len({i.text for i in ITEMS}) == len(ITEMS)
    assert len({i.item_id for i in ITEMS}) == len(ITEMS)
    for family, members in itertools.groupby(ITEMS, key=lambda i: i.family):
        group = list(members)
        assert len({i.reference for i in group}) == 1
        assert {i.evaluation for i in group} == {family.endswith("-b")}
        intent, lang = group[0].intent, group[0].lang
        assert family == f"{intent.value}-{lang}-{'b' if group[0].evaluation else 'a'}"


def test_phrasings_of_different_families_are_not_near_duplicates() -> None:
    for left, right in itertools.combinations(ITEMS, 2):
        if left.family == right.family:
            continue
        a, b = normalized(left.text), normalized(right.text)
        assert a != b
        assert trigram_jaccard(a, b) < 0.8, (left.text, right.text)


def test_families_have_their_own_reference_wording() -> None:
    references = {i.family: normalized(i.reference) for i in ITEMS}
    assert len(set(references.values())) == len(references)


def test_the_trainers_clustering_finds_one_family_per_scenario_family() -> None:
    families = pytest.importorskip("trainer.families")
    settings = pytest.importorskip("trainer.config").DatasetConfig()
    similarity = getattr(settings, "family_similarity", 0.8)
    found = families.assign_families(
        [
            families.FamilyItem(
                key=i.item_id,
                prompt=i.text,
                reference=i.reference,
                family_hint=i.family if i.evaluation else None,
            )
            for i in ITEMS
        ],
        similarity=similarity,
    )
    by_family: dict[str, set[str]] = {}
    for i in ITEMS:
        by_family.setdefault(i.family, set()).add(found[i.item_id])
    assert all(len(ids) == 1 for ids in by_family.values())
    assert len({next(iter(ids)) for ids in by_family.values()}) == len(by_family)


def test_fewer_phrasings_take_the_first_of_each_family() -> None:
    one = scenario_items(1)
    assert len(one) == len(Intent) * 2 * 2
    assert {i.family for i in one} == {i.family for i in ITEMS}
    assert all(i.item_id.endswith("-0") for i in one)


def test_settings_bound_the_phrasings_by_what_the_scenario_has() -> None:
    settings = SimulationSettings()
    assert settings.phrasings_per_family == PHRASINGS_PER_FAMILY
    assert settings.fast_phrasings_per_family == 1
    with pytest.raises(ValueError, match="phrasings_per_family"):
        SimulationSettings(phrasings_per_family=PHRASINGS_PER_FAMILY + 1)


def test_item_for_text_finds_the_opening_question() -> None:
    question: ScenarioItem = ITEMS[5]
    assert item_for_text(ITEMS, f"  {question.text} ") is question
    assert item_for_text(ITEMS, question.text + REPEAT_SUFFIX[question.lang]) is None
    assert item_for_text(ITEMS, "What is the weather?") is None


def test_evaluation_prompts_are_the_evaluation_families_one_turn_each() -> None:
    prompts = evaluation_prompts(ITEMS)
    evaluation = [i for i in ITEMS if i.evaluation]
    assert len(prompts) == len(evaluation) == len(ITEMS) // 2
    assert all(isinstance(p, EvalPrompt) for p in prompts)
    assert {p.family for p in prompts} == {i.family for i in evaluation}
    assert all(len(p.messages) == 1 and p.messages[0].role == "user" for p in prompts)
    assert {p.prompt for p in prompts} == {i.text for i in evaluation}
    types = {p.family.rsplit("-", 2)[0]: p.problem_types for p in prompts}
    assert types == {
        "pricing": ("missing_knowledge",),
        "refund": ("missing_knowledge",),
        "curriculum": ("missing_knowledge",),
        "job_guarantee": ("over_promise",),
        "objection": ("wrong_objection_handling",),
        "signup_ready": ("wrong_CTA_timing",),
    }
