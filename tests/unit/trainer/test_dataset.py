"""The dataset builder: determinism, weights and the problem cap, dedup, masking, splits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from tests.trainer_fixtures import baseline_sample, make_pool, problem_sample
from trainer.config import DatasetConfig
from trainer.dataset import build_dataset
from trainer.exceptions import DatasetError
from trainer.manifest import DATASET_FILE, MANIFEST_FILE, write_dataset
from trainer.records import ChatMessage, PoolSample, Tier


def _write(pool: list[PoolSample], config: DatasetConfig, out: Path) -> bytes:
    built = build_dataset(pool, config=config)
    write_dataset(built.rows, built.manifest, out)
    return (out / DATASET_FILE).read_bytes() + (out / MANIFEST_FILE).read_bytes()


def test_same_pool_and_seed_give_same_bytes(tmp_path: Path) -> None:
    pool = make_pool()
    first = _write(pool, DatasetConfig(seed=3), tmp_path / "a")
    second = _write(list(reversed(pool)), DatasetConfig(seed=3), tmp_path / "b")
    assert first == second
    other_seed = _write(pool, DatasetConfig(seed=4), tmp_path / "c")
    assert other_seed != first


def test_manifest_records_hash_counts_and_sources(tmp_path: Path) -> None:
    pool = make_pool()
    built = build_dataset(pool, config=DatasetConfig())
    manifest = write_dataset(built.rows, built.manifest, tmp_path)
    data = (tmp_path / DATASET_FILE).read_bytes()
    assert manifest["dataset_sha256"] == hashlib.sha256(data).hexdigest()
    assert orjson.loads((tmp_path / MANIFEST_FILE).read_bytes()) == manifest
    assert manifest["source_sample_ids"] == sorted(s.sample_id for s in pool)
    assert manifest["counts"]["total"] == len(pool)
    assert sum(manifest["counts"]["per_split"].values()) == len(pool)
    assert set(manifest["counts"]["per_tier"]) == {t.value for t in Tier}
    assert sum(manifest["effective_weight_share"].values()) == pytest.approx(1.0, abs=1e-5)


def test_tier_weights_and_uncapped_problem_weight() -> None:
    config = DatasetConfig(problem_weight=0.3, heldout_fraction=0, baseline_eval_fraction=0)
    built = build_dataset(make_pool(baselines=30, problems=4), config=config)
    weights = {row["tier"]: row["weight"] for row in built.rows}
    assert weights == {
        "core_baseline": 1.0,
        "secondary_baseline": 0.7,
        "candidate_baseline": 0.5,
        "problem": 0.3,
    }
    assert not built.manifest["problem_weight_capped"]


def test_problem_weight_is_capped_at_the_share() -> None:
    config = DatasetConfig(problem_weight=1.0, heldout_fraction=0, baseline_eval_fraction=0)
    built = build_dataset(make_pool(baselines=6, problems=20), config=config)
    share = built.manifest["effective_weight_share"]["problem"]
    assert share == pytest.approx(0.3, abs=1e-5)
    assert built.manifest["problem_weight_capped"]
    problem_weights = {row["weight"] for row in built.rows if row["tier"] == "problem"}
    assert len(problem_weights) == 1
    assert problem_weights.pop() < 0.3


def test_only_problems_is_refused() -> None:
    pool = [problem_sample(i, "over_promise") for i in range(4)]
    with pytest.raises(DatasetError, match="baseline"):
        build_dataset(pool, config=DatasetConfig())


def test_a_problem_duplicating_a_baseline_trains_and_flags_the_baseline() -> None:
    core = baseline_sample(1, Tier.CORE_BASELINE)
    copy = core.model_copy(
        update={
            "sample_id": "a-problem",
            "status": Tier.PROBLEM,
            "problem_types": ["missing_knowledge"],
            "corrected_response": "  THE plus plan costs 6 dollars   a month.",
        }
    )
    pool = [core, copy, *(baseline_sample(i, Tier.CORE_BASELINE) for i in range(2, 8))]
    built = build_dataset(pool, config=DatasetConfig(baseline_eval_fraction=0))
    ids = {row["sample_id"] for row in built.rows}
    assert "a-problem" in ids
    assert "b001" not in ids
    assert built.manifest["duplicates_dropped"] == {"b001": "a-problem"}
    assert built.manifest["flagged_baseline"] == {"b001": "a-problem"}
    assert "a-problem" in built.manifest["trained_sample_ids"]


def test_duplicate_baselines_keep_the_higher_tier_and_flag_nothing() -> None:
    core = baseline_sample(1, Tier.CORE_BASELINE)
    copy = core.model_copy(update={"sample_id": "a-copy", "status": Tier.CANDIDATE_BASELINE})
    built = build_dataset(
        [core, copy, baseline_sample(2, Tier.CORE_BASELINE)], config=DatasetConfig()
    )
    assert {row["sample_id"] for row in built.rows} == {"b001", "b002"}
    assert built.manifest["duplicates_dropped"] == {"a-copy": "b001"}
    assert built.manifest["flagged_baseline"] == {}


def test_pii_mask_applies_to_every_message() -> None:
    built = build_dataset(make_pool(6, 2), config=DatasetConfig(), mask=lambda text: text.upper())
    for row in built.rows:
        assert all(m["content"] == m["content"].upper() for m in row["messages"])


def test_problem_context_drops_the_bad_reply_and_ends_with_the_target() -> None:
    built = build_dataset(make_pool(6, 2), config=DatasetConfig())
    row = next(r for r in built.rows if r["tier"] == "problem")
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert "Buy now" not in row["messages"][-1]["content"]


def test_heldout_has_one_family_per_type_with_two_families_and_none_with_one() -> None:
    pool = make_pool(baselines=10, problems=0)
    pool += [problem_sample(0, "over_promise"), problem_sample(1, "over_promise")]
    pool.append(problem_sample(2, "wrong_CTA_timing"))
    built = build_dataset(pool, config=DatasetConfig(heldout_fraction=0.01))
    held = built.manifest["counts"]["per_split_problem_type"]["heldout_problem"]
    assert held == {"over_promise": 1}
    train_types = built.manifest["counts"]["per_split_problem_type"]["train"]
    assert train_types == {"over_promise": 1, "wrong_CTA_timing": 1}


def test_baseline_regression_split_is_whole_baseline_families() -> None:
    built = build_dataset(make_pool(), config=DatasetConfig(baseline_eval_fraction=0.25))
    families = built.manifest["families"]
    regression = [f for f in families.values() if f["split"] == "baseline_regression"]
    baseline_families = [f for f in families.values() if not f["problem_types"]]
    assert len(regression) == round(0.25 * len(baseline_families))
    rows = [r for r in built.rows if r["split"] == "baseline_regression"]
    assert sorted(r["sample_id"] for r in rows) == sorted(
        sid for f in regression for sid in f["sample_ids"]
    )
    assert {r["tier"] for r in rows} <= {
        "core_baseline",
        "secondary_baseline",
        "candidate_baseline",
    }


def test_duplicate_sample_ids_are_refused() -> None:
    sample = baseline_sample(1, Tier.CORE_BASELINE)
    twin = sample.model_copy(update={"messages": [ChatMessage(role="user", content="other")]})
    with pytest.raises(DatasetError, match="twice"):
        build_dataset([sample, twin], config=DatasetConfig())
