"""The dataset manifest and the byte-stable writer of ``dataset.jsonl`` / ``manifest.json``.

Besides counts, weights and shares, the manifest is the exact record of what a
cycle did with each pool sample; the id lists partition the kept samples:

- ``trained_sample_ids``: the train split, exactly the samples trained on;
- ``heldout_sample_ids`` / ``regression_sample_ids``: the gate's held-out
  problem and baseline regression splits;
- ``evaluation_excluded_ids``: samples of an evaluation family (not rows);
- ``duplicates_dropped`` ({dropped: kept}) lists the samples not kept;
- ``source_sample_ids``: every pool id read (provenance only, never "trained").

``families`` gives each prompt family's split, normalized prompts, problem types
and sample ids; ``evaluation_set`` the set's version, size and families;
``downweighted`` ({id: reason}) the unsolved problems trained at a lower weight;
``flagged_baseline`` ({baseline id: problem id}) baseline samples whose content
recurred as a problem. ``effective_weight_share`` is each tier's share of the
train split's Σ weight, i.e. of the influence (see :mod:`trainer.loss`).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trainer.config import DatasetConfig
from trainer.evalset import EvaluationSet
from trainer.records import Tier

DATASET_FILE = "dataset.jsonl"
MANIFEST_FILE = "manifest.json"
_JSON_OPTIONS = orjson.OPT_SORT_KEYS


def _counts(values: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _shares(rows: Sequence[Mapping[str, Any]], digits: int) -> dict[str, float]:
    train = [row for row in rows if row["split"] == "train"]
    total = sum(row["weight"] for row in train)
    by_tier: Counter[str] = Counter()
    for row in train:
        by_tier[row["tier"]] += row["weight"]
    return {tier: round(w / total, digits) if total else 0.0 for tier, w in sorted(by_tier.items())}


@dataclass(frozen=True)
class Bookkeeping:
    """What the builder did with each pool sample, beyond the rows themselves."""

    source_ids: Sequence[str] = ()
    dropped: Mapping[str, str] = field(default_factory=dict)
    evaluation_excluded: Sequence[str] = ()
    families: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    evaluation: EvaluationSet = field(default_factory=EvaluationSet)
    downweighted: Mapping[str, str] = field(default_factory=dict)
    flagged_baseline: Mapping[str, str] = field(default_factory=dict)


def _ids(rows: Sequence[Mapping[str, Any]], split: str) -> list[str]:
    return sorted(str(row["sample_id"]) for row in rows if row["split"] == split)


def _counts_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    per_split_type: dict[str, dict[str, int]] = {}
    for split in sorted({row["split"] for row in rows}):
        types = [t for row in rows if row["split"] == split for t in row["problem_types"]]
        per_split_type[split] = _counts(types)
    return {
        "total": len(rows),
        "per_tier": _counts([row["tier"] for row in rows]),
        "per_split": _counts([row["split"] for row in rows]),
        "per_problem_type": _counts([t for row in rows for t in row["problem_types"]]),
        "per_split_problem_type": per_split_type,
    }


def build_manifest(
    rows: Sequence[Mapping[str, Any]],
    *,
    weights: Mapping[Tier, float],
    config: DatasetConfig,
    books: Bookkeeping,
) -> dict[str, Any]:
    """Counts, weights, influence shares, the id lists and families (module docstring)."""
    digits = config.weight_decimals
    evaluation = books.evaluation
    return {
        "counts": _counts_of(rows),
        "weights": {tier.value: round(w, digits) for tier, w in weights.items()},
        "configured_problem_weight": config.problem_weight,
        "problem_weight_capped": weights[Tier.PROBLEM] < config.problem_weight,
        "effective_weight_share": _shares(rows, digits),
        "seed": config.seed,
        "config": config.model_dump(mode="json"),
        "source_sample_ids": list(books.source_ids),
        "trained_sample_ids": _ids(rows, "train"),
        "heldout_sample_ids": _ids(rows, "heldout_problem"),
        "regression_sample_ids": _ids(rows, "baseline_regression"),
        "evaluation_excluded_ids": sorted(books.evaluation_excluded),
        "duplicates_dropped": dict(sorted(books.dropped.items())),
        "families": {fid: dict(books.families[fid]) for fid in sorted(books.families)},
        "evaluation_set": {
            "version": evaluation.version,
            "prompts": len(evaluation.prompts),
            "families": sorted(evaluation.families),
        },
        "downweighted": dict(sorted(books.downweighted.items())),
        "flagged_baseline": dict(sorted(books.flagged_baseline.items())),
        "dataset_sha256": None,
    }


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """JSON lines with sorted keys: the exact bytes of ``dataset.jsonl``."""
    return b"".join(orjson.dumps(row, option=_JSON_OPTIONS) + b"\n" for row in rows)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_dataset(
    rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Write ``dataset.jsonl`` and ``manifest.json`` (with the file's sha256); return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = encode_rows(rows)
    final = {**manifest, "dataset_sha256": hashlib.sha256(data).hexdigest()}
    _write_atomic(out_dir / DATASET_FILE, data)
    _write_atomic(
        out_dir / MANIFEST_FILE, orjson.dumps(final, option=_JSON_OPTIONS | orjson.OPT_INDENT_2)
    )
    return final


def read_rows(dataset_dir: Path) -> list[dict[str, Any]]:
    """The rows of a written ``dataset.jsonl``."""
    lines = (dataset_dir / DATASET_FILE).read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def read_manifest(dataset_dir: Path) -> dict[str, Any]:
    """The written ``manifest.json``."""
    data: dict[str, Any] = orjson.loads((dataset_dir / MANIFEST_FILE).read_bytes())
    return data
