"""The dataset builder: pool samples → a governed, deterministic chat-format mix.

Pure except :func:`write_dataset`. Baseline tiers keep fixed weights, this
cycle's problems get a configurable weight capped at a share of the train
split's total weight, duplicates keep the higher tier, text passes through a
PII mask, and held-out splits are drawn by hash. Same pool + seed → same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trainer.config import DatasetConfig
from trainer.exceptions import DatasetError
from trainer.manifest import build_manifest
from trainer.records import BASELINE_TIERS, TIER_PRIORITY, ChatMessage, PoolSample, Tier
from trainer.splits import draw_baseline, heldout_per_type

logger = logging.getLogger(__name__)

Mask = Callable[[str], str]

SPLIT_TRAIN = "train"
SPLIT_HELDOUT = "heldout_problem"
SPLIT_BASELINE = "baseline_regression"
SPLITS: tuple[str, ...] = (SPLIT_TRAIN, SPLIT_HELDOUT, SPLIT_BASELINE)


def identity_mask(text: str) -> str:
    """The default PII mask: no change (``loraloop.pii`` supplies the real one)."""
    return text


@dataclass(frozen=True)
class BuiltDataset:
    """The rows (sorted, final) and their manifest (without the file hash until written)."""

    rows: list[dict[str, Any]]
    manifest: dict[str, Any]


def content_key(messages: Iterable[ChatMessage]) -> str:
    """sha256 of the normalized conversation: NFKC, case-folded, whitespace collapsed."""
    parts = []
    for message in messages:
        text = " ".join(unicodedata.normalize("NFKC", message.content).casefold().split())
        parts.append(f"{message.role}\x1f{text}")
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


def _masked(sample: PoolSample, mask: Mask) -> list[ChatMessage]:
    return [ChatMessage(role=m.role, content=mask(m.content)) for m in sample.training_messages()]


def deduplicate(
    samples: Iterable[tuple[PoolSample, list[ChatMessage]]],
) -> tuple[list[tuple[PoolSample, list[ChatMessage]]], dict[str, str]]:
    """Keep one sample per content key: the higher tier, then the smaller sample_id."""
    rank = {tier: index for index, tier in enumerate(TIER_PRIORITY)}
    best: dict[str, tuple[PoolSample, list[ChatMessage]]] = {}
    ordered = sorted(samples, key=lambda pair: (rank[pair[0].status], pair[0].sample_id))
    dropped: dict[str, str] = {}
    for sample, messages in ordered:
        key = content_key(messages)
        if key in best:
            dropped[sample.sample_id] = best[key][0].sample_id
            continue
        best[key] = (sample, messages)
    return sorted(best.values(), key=lambda pair: pair[0].sample_id), dropped


def tier_weights(config: DatasetConfig) -> dict[Tier, float]:
    """The configured weight of each tier before the problem cap."""
    return {
        Tier.CORE_BASELINE: config.core_weight,
        Tier.SECONDARY_BASELINE: config.secondary_weight,
        Tier.CANDIDATE_BASELINE: config.candidate_weight,
        Tier.PROBLEM: config.problem_weight,
    }


def capped_problem_weight(
    baseline_weight: float, problem_count: int, config: DatasetConfig
) -> float:
    """The problem weight after scaling it down so problems hold at most the cap's share."""
    wanted = config.problem_weight
    if problem_count == 0:
        return wanted
    if baseline_weight <= 0:
        msg = (
            f"{problem_count} problem samples but no baseline sample in the train split: a "
            "LoRA dataset is never only problems; promote or import baseline samples first"
        )
        raise DatasetError(msg)
    cap = config.problem_share_cap
    largest = cap * baseline_weight / ((1 - cap) * problem_count)
    return min(wanted, largest)


def _assign_splits(
    kept: list[tuple[PoolSample, list[ChatMessage]]], config: DatasetConfig
) -> dict[str, str]:
    problems = {s.sample_id: s.problem_types for s, _ in kept if s.status is Tier.PROBLEM}
    baselines = [s.sample_id for s, _ in kept if s.status in BASELINE_TIERS]
    held = heldout_per_type(problems, fraction=config.heldout_fraction, seed=config.seed)
    regression = draw_baseline(
        baselines,
        fraction=config.baseline_eval_fraction,
        at_most=config.baseline_eval_max,
        seed=config.seed,
    )
    splits = {s.sample_id: SPLIT_TRAIN for s, _ in kept}
    splits.update(dict.fromkeys(held, SPLIT_HELDOUT))
    splits.update(dict.fromkeys(regression, SPLIT_BASELINE))
    return splits


def build_dataset(
    samples: Iterable[PoolSample], *, config: DatasetConfig, mask: Mask = identity_mask
) -> BuiltDataset:
    """Mix, deduplicate, mask, weight and split the pool; rows sorted by (split, sample_id)."""
    pool = list(samples)
    ids = [s.sample_id for s in pool]
    if len(set(ids)) != len(ids):
        msg = "the pool holds a sample_id twice: pass the latest revision of each sample only"
        raise DatasetError(msg)
    kept, dropped = deduplicate((s, _masked(s, mask)) for s in pool)
    splits = _assign_splits(kept, config)
    weights = tier_weights(config)
    train = [s for s, _ in kept if splits[s.sample_id] == SPLIT_TRAIN]
    baseline_weight = sum(weights[s.status] for s in train if s.status in BASELINE_TIERS)
    problem_count = sum(1 for s in train if s.status is Tier.PROBLEM)
    weights[Tier.PROBLEM] = capped_problem_weight(baseline_weight, problem_count, config)
    if weights[Tier.PROBLEM] < config.problem_weight:
        logger.info(
            "problem weight capped from %s to %s", config.problem_weight, weights[Tier.PROBLEM]
        )
    rows = [
        {
            "messages": [m.model_dump() for m in messages],
            "weight": round(weights[sample.status], config.weight_decimals),
            "sample_id": sample.sample_id,
            "tier": sample.status.value,
            "problem_types": sorted(set(sample.problem_types)),
            "split": splits[sample.sample_id],
        }
        for sample, messages in kept
    ]
    rows.sort(key=lambda row: (SPLITS.index(row["split"]), row["sample_id"]))
    manifest = build_manifest(
        rows, weights=weights, config=config, source_ids=sorted(ids), dropped=dropped
    )
    return BuiltDataset(rows=rows, manifest=manifest)
