"""One training cycle: dataset → fresh adapter → offline gate → registered ``model_vN``.

Runs in the worker process (:mod:`trainer.worker`). The judge the gate asks is
loaded first, so a misconfigured ``LORALOOP_GATE__JUDGE`` fails before any
training; the gate reads its prompts from the dataset directory
(``dataset.jsonl`` and, when present, ``evaluation.jsonl``). Everything is written to
the registry's staging area and renamed into place only when every step
succeeded; a gated-out adapter is still registered (status ``gated_out``) so
its evidence is kept, but it is never rolled out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from trainer.base_model import check_parent_base, load_base, resolve_base_model
from trainer.config import GateConfig, TrainConfig
from trainer.dataset import SPLIT_BASELINE, SPLIT_HELDOUT, SPLIT_TRAIN
from trainer.encoding import EncodedSample, encode_rows
from trainer.evalset import EVALUATION_FILE, read_evaluation_set
from trainer.exceptions import DatasetError
from trainer.gate import (
    REPLIES_FILE,
    GateProgress,
    GateResult,
    gate_prompts,
    read_replies,
    run_gate,
)
from trainer.judging import load_judge
from trainer.lora import StepInfo, TrainMetrics, attach_adapter, train_adapter
from trainer.manifest import MANIFEST_FILE, read_manifest, read_rows
from trainer.registry import Registry, write_version
from trainer.schedule import flash_attention_available, resolve_device, use_packing
from trainer.versions import VersionInfo, VersionStatus, utc_now

logger = logging.getLogger(__name__)

ADAPTER_NAME = "default"
METRICS_FILE = "metrics.json"
GATE_FILE = "gate.json"
BASE_MODEL_CACHE = Path("cache") / "base-model"
BASE_REPLIES_CACHE = Path("cache") / "base-gate-replies"
"""The bare base's gate replies, one file per base (sha256): the parent of every cycle
until a version ships."""


def _split(rows: Sequence[Mapping[str, Any]], split: str) -> list[Mapping[str, Any]]:
    return [row for row in rows if row["split"] == split]


def _encode(
    tokenizer: Any, rows: Sequence[Mapping[str, Any]], config: TrainConfig
) -> list[EncodedSample]:
    return encode_rows(
        tokenizer,
        rows,
        max_seq_len=config.max_seq_len,
        all_turns=config.loss_on_all_assistant_turns,
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))


def _write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` whole (a cache read by later cycles): write a sibling, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    _write_json(staging, data)
    staging.replace(path)


def _metrics(train: TrainMetrics, config: TrainConfig) -> dict[str, Any]:
    return {
        **asdict(train),
        "tokens_per_s": train.tokens_per_s,
        "train_config": config.model_dump(mode="json"),
    }


def run_cycle(
    dataset_dir: Path,
    *,
    registry_root: Path,
    data_dir: Path,
    train_config: TrainConfig | None = None,
    gate_config: GateConfig | None = None,
    parent: str | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_gate: GateProgress | None = None,
) -> VersionInfo:
    """Train, gate and register one version; a failure registers nothing and re-raises.

    ``on_step`` hears every optimizer step, ``on_gate`` the gate's generation progress.
    """
    train_config = train_config or TrainConfig()
    gate_config = gate_config or GateConfig()
    judge = load_judge(gate_config.judge)
    registry = Registry(registry_root)
    parent_dir = registry.path(parent) if parent else None
    rows, manifest = read_rows(dataset_dir), read_manifest(dataset_dir)
    if not _split(rows, SPLIT_TRAIN):
        msg = f"{dataset_dir} has no train rows: build the dataset from a non-empty pool"
        raise DatasetError(msg)
    cache = train_config.base_model_cache or data_dir / BASE_MODEL_CACHE
    ref = resolve_base_model(base_model=train_config.base_model, cache_dir=cache)
    if parent:
        check_parent_base(parent, registry.get(parent).base_model, ref)
    device = resolve_device(train_config.device)
    flash = use_packing(train_config, device) and flash_attention_available()
    base, tokenizer = load_base(ref, attn_implementation="flash_attention_2" if flash else None)
    prompts = gate_prompts(rows, read_evaluation_set(dataset_dir / EVALUATION_FILE))
    train = _encode(tokenizer, _split(rows, SPLIT_TRAIN), train_config)
    heldout = _encode(tokenizer, _split(rows, SPLIT_HELDOUT), train_config)
    baseline = _encode(tokenizer, _split(rows, SPLIT_BASELINE), train_config)
    parent_replies_file = (
        parent_dir / REPLIES_FILE
        if parent_dir is not None
        else data_dir / BASE_REPLIES_CACHE / f"{ref.sha256}.json"
    )
    name = registry.reserve()
    logger.info("training %s on %s samples (parent %s)", name, len(train), parent or "base")
    with registry.staged(name) as staging:
        model = attach_adapter(base, train_config)
        metrics = train_adapter(
            model, train, config=train_config, pad_id=tokenizer.pad_token_id, on_step=on_step
        )
        model.save_pretrained(str(staging), selected_adapters=[ADAPTER_NAME])
        gate: GateResult = run_gate(
            model,
            tokenizer,
            prompts=prompts,
            judge=judge,
            heldout=heldout,
            baseline=baseline,
            config=gate_config,
            parent_dir=parent_dir,
            on_progress=on_gate,
            parent_replies=(known := read_replies(parent_replies_file)),
        )
        if parent_dir is None:  # registered versions are immutable; the base's cache grows
            _write_json_atomic(parent_replies_file, {**known, **gate.parent_replies})
        info = VersionInfo(
            name=name,
            parent=parent,
            base_model=ref.identity(),
            created_at=utc_now(),
            status=VersionStatus.TRAINED if gate.passed else VersionStatus.GATED_OUT,
            dataset_sha256=manifest.get("dataset_sha256"),
            gate_passed=gate.passed,
        )
        _write_json(staging / MANIFEST_FILE, manifest)
        _write_json(staging / METRICS_FILE, _metrics(metrics, train_config))
        _write_json(staging / GATE_FILE, gate.model_dump(mode="json"))
        _write_json(staging / REPLIES_FILE, gate.replies)  # the next cycle's parent replies
        write_version(staging, info)
    return info
