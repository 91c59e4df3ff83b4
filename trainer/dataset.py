"""The dataset builder: pool samples → a governed, deterministic chat-format mix.

Pure except :func:`~trainer.manifest.write_dataset`. Steps:

1. Text passes through a PII mask.
2. Duplicates (same normalized conversation) keep one sample: a problem when
   the group holds one (a recurring problem that duplicates a baseline sample is
   evidence the baseline was not learned: the problem trains, the baseline row
   is dropped from this dataset and listed in ``flagged_baseline``), else the
   higher tier.
3. Every kept sample gets a prompt family (:mod:`trainer.families`; its first
   user message, its corrected response); the evaluation set's prompts join the
   clustering, and samples of an evaluation family are put aside (not rows).
4. Whole families are held out per problem type and for the baseline
   regression check, rotated by ``rotation`` (:mod:`trainer.splits`).
5. Weights are per-sample influence (:mod:`trainer.loss`): baseline tiers keep
   fixed weights; problems get a configured weight, times
   ``unsolved_weight_factor`` once ``unsolved_cycles_before_downweight``
   gate-passed versions trained them, all scaled down together so problems hold
   at most ``problem_share_cap`` of the train split's Σ weight.

Same pool, seed, rotation and evaluation set → same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.config import DatasetConfig
from trainer.evalset import EvaluationSet
from trainer.exceptions import DatasetError
from trainer.families import FamilyItem, assign_families, normalize_prompt
from trainer.manifest import Bookkeeping, build_manifest
from trainer.records import BASELINE_TIERS, TIER_PRIORITY, ChatMessage, PoolSample, Tier
from trainer.splits import (
    SPLIT_BASELINE,
    SPLIT_EVALUATION,
    SPLIT_HELDOUT,
    SPLIT_TRAIN,
    SPLITS,
    Family,
    family_splits,
)

__all__ = [
    "SPLITS",
    "SPLIT_BASELINE",
    "SPLIT_EVALUATION",
    "SPLIT_HELDOUT",
    "SPLIT_TRAIN",
    "BuiltDataset",
    "build_dataset",
    "content_key",
    "deduplicate",
    "identity_mask",
]

logger = logging.getLogger(__name__)

Mask = Callable[[str], str]
Masked = tuple[PoolSample, list[ChatMessage]]

#: Prefix of the clustering keys of evaluation prompts (never a sample_id).
_EVAL_KEY = "\x1eevaluation:"


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


@dataclass(frozen=True)
class Deduplicated:
    """The kept samples, dropped id → kept id, and baseline id → the problem that recurred."""

    kept: list[Masked]
    dropped: dict[str, str] = field(default_factory=dict)
    flagged_baseline: dict[str, str] = field(default_factory=dict)


def _keep_order(pair: Masked) -> tuple[bool, int, str]:
    """A problem first, then the higher tier, then the smaller sample_id."""
    sample = pair[0]
    return sample.status is not Tier.PROBLEM, TIER_PRIORITY.index(sample.status), sample.sample_id


def deduplicate(samples: Iterable[Masked]) -> Deduplicated:
    """Keep one sample per content key (see the module docstring, step 2)."""
    groups: dict[str, list[Masked]] = {}
    for pair in samples:
        groups.setdefault(content_key(pair[1]), []).append(pair)
    result = Deduplicated(kept=[])
    for group in groups.values():
        keep, *others = sorted(group, key=_keep_order)
        result.kept.append(keep)
        for sample, _ in others:
            result.dropped[sample.sample_id] = keep[0].sample_id
            if keep[0].status is Tier.PROBLEM and sample.status in BASELINE_TIERS:
                result.flagged_baseline[sample.sample_id] = keep[0].sample_id
    result.kept.sort(key=lambda pair: pair[0].sample_id)
    return result


def first_user_prompt(messages: Sequence[ChatMessage]) -> str:
    """The first user message of a conversation ("" when it has none)."""
    return next((m.content for m in messages if m.role == "user"), "")


def tier_weights(config: DatasetConfig) -> dict[Tier, float]:
    """The configured weight of each tier before the problem cap."""
    return {
        Tier.CORE_BASELINE: config.core_weight,
        Tier.SECONDARY_BASELINE: config.secondary_weight,
        Tier.CANDIDATE_BASELINE: config.candidate_weight,
        Tier.PROBLEM: config.problem_weight,
    }


def problem_scale(baseline_weight: float, problem_weight: float, config: DatasetConfig) -> float:
    """The factor (≤ 1) on every problem weight so problems hold at most the cap's share.

    Both arguments are Σ of the train split's weights (influence), before the cap.
    """
    if problem_weight <= 0:
        return 1.0
    if baseline_weight <= 0:
        msg = (
            "problem samples but no baseline sample in the train split: a LoRA dataset is "
            "never only problems; promote or import baseline samples first"
        )
        raise DatasetError(msg)
    cap = config.problem_share_cap
    return min(1.0, cap * baseline_weight / ((1 - cap) * problem_weight))


def unsolved(sample: PoolSample, config: DatasetConfig) -> bool:
    """A problem already trained by enough gate-passed versions to be down-weighted."""
    return (
        sample.status is Tier.PROBLEM
        and sample.times_trained >= config.unsolved_cycles_before_downweight
    )


@dataclass(frozen=True)
class _Layout:
    """Each kept sample's family and split, and the families' descriptions."""

    family_of: dict[str, str]
    split_of: dict[str, str]
    family_split: dict[str, str]
    families: list[Family]
    eval_prompts: dict[str, list[str]]
    eval_types: dict[str, set[str]]


def _layout(
    kept: list[Masked], evaluation: EvaluationSet, config: DatasetConfig, rotation: int
) -> _Layout:
    items = [FamilyItem(s.sample_id, first_user_prompt(m), m[-1].content) for s, m in kept]
    items += [
        FamilyItem(f"{_EVAL_KEY}{i}", p.prompt, family_hint=p.family)
        for i, p in enumerate(evaluation.prompts)
    ]
    assigned = assign_families(items, similarity=config.family_similarity)
    members: dict[str, list[PoolSample]] = {}
    for sample, _ in kept:
        members.setdefault(assigned[sample.sample_id], []).append(sample)
    eval_prompts: dict[str, list[str]] = {}
    eval_types: dict[str, set[str]] = {}
    for i, prompt in enumerate(evaluation.prompts):
        fid = assigned[f"{_EVAL_KEY}{i}"]
        eval_prompts.setdefault(fid, []).append(prompt.prompt)
        eval_types.setdefault(fid, set()).update(prompt.problem_types)
    families = [
        Family(
            family_id=fid,
            sample_ids=tuple(sorted(s.sample_id for s in samples)),
            problem_types=frozenset(
                t for s in samples if s.status is Tier.PROBLEM for t in s.problem_types
            ),
            has_problem=any(s.status is Tier.PROBLEM for s in samples),
            evaluation=fid in eval_prompts,
        )
        for fid, samples in sorted(members.items())
    ]
    families += [
        Family(family_id=fid, evaluation=True) for fid in eval_prompts if fid not in members
    ]
    splits = family_splits(
        families,
        heldout_fraction=config.heldout_fraction,
        baseline_fraction=config.baseline_eval_fraction,
        baseline_max=config.baseline_eval_max,
        seed=config.seed,
        rotation=rotation,
    )
    family_of = {s.sample_id: assigned[s.sample_id] for s, _ in kept}
    split_of = {sid: splits[fid] for sid, fid in family_of.items()}
    return _Layout(family_of, split_of, splits, families, eval_prompts, eval_types)


@dataclass(frozen=True)
class _Weights:
    per_sample: dict[str, float]
    per_tier: dict[Tier, float]
    downweighted: dict[str, str]


def _weights(kept: list[Masked], split_of: Mapping[str, str], config: DatasetConfig) -> _Weights:
    tiers = tier_weights(config)
    factor = config.unsolved_weight_factor
    train = [s for s, _ in kept if split_of[s.sample_id] == SPLIT_TRAIN]
    downweighted = {s.sample_id for s in train if unsolved(s, config)}
    nominal = {
        s.sample_id: tiers[s.status] * (factor if s.sample_id in downweighted else 1.0)
        for s, _ in kept
    }
    baseline = sum(nominal[s.sample_id] for s in train if s.status in BASELINE_TIERS)
    problems = sum(nominal[s.sample_id] for s in train if s.status is Tier.PROBLEM)
    scale = problem_scale(baseline, problems, config)
    if scale < 1:
        logger.info("problem weights scaled by %.4f to meet the problem share cap", scale)
    return _Weights(
        per_sample={
            s.sample_id: nominal[s.sample_id] * (scale if s.status is Tier.PROBLEM else 1.0)
            for s, _ in kept
        },
        per_tier=tiers | {Tier.PROBLEM: tiers[Tier.PROBLEM] * scale},
        downweighted={
            s.sample_id: (
                f"unsolved after {s.times_trained} cycles: weight x {factor:g} "
                f"({config.unsolved_cycles_before_downweight} or more gate-passed versions "
                "trained it)"
            )
            for s in train
            if s.sample_id in downweighted
        },
    )


def _family_entries(kept: list[Masked], layout: _Layout) -> dict[str, dict[str, Any]]:
    """The manifest's ``families``: split, normalized prompts, problem types, sample ids."""
    prompts = {f.family_id: set(layout.eval_prompts.get(f.family_id, ())) for f in layout.families}
    for sample, messages in kept:
        prompts[layout.family_of[sample.sample_id]].add(first_user_prompt(messages))
    return {
        f.family_id: {
            "split": layout.family_split[f.family_id],
            "prompts": sorted({normalize_prompt(p) for p in prompts[f.family_id]}),
            "problem_types": sorted(f.problem_types | layout.eval_types.get(f.family_id, set())),
            "sample_ids": list(f.sample_ids),
        }
        for f in sorted(layout.families, key=lambda f: f.family_id)
    }


def build_dataset(
    samples: Iterable[PoolSample],
    *,
    config: DatasetConfig,
    mask: Mask = identity_mask,
    rotation: int = 0,
    evaluation: EvaluationSet | None = None,
) -> BuiltDataset:
    """Mix, deduplicate, mask, cluster, split and weight the pool (see the module docstring).

    ``rotation`` (the cycle's ordinal) rotates the held-out draws; ``evaluation``
    is the evaluation set (None: none). Rows are sorted by (split, sample_id).
    """
    pool = list(samples)
    ids = [s.sample_id for s in pool]
    if len(set(ids)) != len(ids):
        msg = "the pool holds a sample_id twice: pass the latest revision of each sample only"
        raise DatasetError(msg)
    evaluation = evaluation or EvaluationSet()
    dedup = deduplicate((s, _masked(s, mask)) for s in pool)
    layout = _layout(dedup.kept, evaluation, config, rotation)
    weights = _weights(dedup.kept, layout.split_of, config)
    rows = [
        {
            "messages": [m.model_dump() for m in messages],
            "weight": round(weights.per_sample[sample.sample_id], config.weight_decimals),
            "sample_id": sample.sample_id,
            "tier": sample.status.value,
            "problem_types": sorted(set(sample.problem_types)),
            "split": layout.split_of[sample.sample_id],
            "family": layout.family_of[sample.sample_id],
        }
        for sample, messages in dedup.kept
        if layout.split_of[sample.sample_id] != SPLIT_EVALUATION
    ]
    rows.sort(key=lambda row: (SPLITS.index(row["split"]), row["sample_id"]))
    bookkeeping = Bookkeeping(
        source_ids=sorted(ids),
        dropped=dedup.dropped,
        evaluation_excluded=sorted(
            sid for sid, split in layout.split_of.items() if split == SPLIT_EVALUATION
        ),
        families=_family_entries(dedup.kept, layout),
        evaluation=evaluation,
        downweighted=weights.downweighted,
        flagged_baseline=dedup.flagged_baseline,
    )
    manifest = build_manifest(rows, weights=weights.per_tier, config=config, books=bookkeeping)
    return BuiltDataset(rows=rows, manifest=manifest)
