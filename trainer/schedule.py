"""How the train split is cut into optimizer steps and micro-batches, and the device setup."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from trainer.config import TrainConfig
from trainer.encoding import EncodedSample


def optimizer_steps(
    samples: Sequence[EncodedSample], config: TrainConfig
) -> Iterator[tuple[int, list[list[EncodedSample]]]]:
    """(epoch, micro-batches) per optimizer step; shuffled per epoch from the seed."""
    per_step = config.batch_size * config.grad_accum
    emitted = 0
    for epoch in range(config.epochs):
        order = list(range(len(samples)))
        random.Random(config.seed * 1_000_003 + epoch).shuffle(order)  # noqa: S311 - not crypto
        for start in range(0, len(order), per_step):
            if config.max_steps is not None and emitted >= config.max_steps:
                return
            chunk = [samples[i] for i in order[start : start + per_step]]
            micro = [
                chunk[i : i + config.batch_size] for i in range(0, len(chunk), config.batch_size)
            ]
            emitted += 1
            yield epoch, micro


def total_steps(sample_count: int, config: TrainConfig) -> int:
    """Optimizer steps the run will take."""
    per_epoch = math.ceil(sample_count / (config.batch_size * config.grad_accum))
    steps = per_epoch * config.epochs
    return steps if config.max_steps is None else min(steps, config.max_steps)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def flash_attention_available() -> bool:
    """FlashAttention 2 is installed and usable by transformers."""
    try:
        from transformers.utils import is_flash_attn_2_available  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - transformers is a training dependency
        return False
    return bool(is_flash_attn_2_available())


def use_packing(config: TrainConfig, device: torch.device) -> bool:
    """Packing when asked, or under ``auto`` on CUDA where FlashAttention 2 is available."""
    if config.packing != "auto":
        return config.packing == "on"
    return device.type == "cuda" and flash_attention_available()


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: when asked, or on a CUDA device that supports it under ``auto``."""
    if config.precision == "bf16":
        return True
    return (
        config.precision == "auto"
        and device.type == "cuda"
        and bool(torch.cuda.is_bf16_supported())
    )


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager[Any]:
    """The forward-pass precision context."""
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
