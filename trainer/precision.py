"""Training precision: bf16 autocast where the hardware computes bf16 natively.

On CUDA that is any GPU ``torch.cuda.is_bf16_supported()`` accepts; on a CPU it
takes the AVX-512 BF16 or AMX instructions (``avx512_bf16`` / ``amx_bf16`` in
``/proc/cpuinfo``), without which oneDNN emulates bf16 and is slower than fp32.
Only the base model's matmuls run in bf16: the LoRA parameters, their gradients
and the optimiser state stay fp32, and the loss is computed in fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import torch

from trainer.config import TrainConfig

logger = logging.getLogger(__name__)

CPUINFO: Final = Path("/proc/cpuinfo")
CPU_BF16_FLAGS: Final = frozenset({"avx512_bf16", "amx_bf16"})
"""Either flag means the CPU multiplies bf16 natively (oneDNN's fast bf16 GEMMs)."""


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags, or None where ``/proc/cpuinfo`` cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def cpu_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """The CPU has native bf16 matmuls (AVX-512 BF16 or AMX)."""
    flags = cpu_flags(cpuinfo)
    if flags is not None:
        return bool(flags & CPU_BF16_FLAGS)
    # No /proc/cpuinfo (macOS, some containers): ask torch's own CPU probe.
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if callable(probe) else False


def train_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast for this run: forced by ``precision``, else where it is native.

    Under ``auto`` a CUDA device uses it when supported, a CPU with native bf16 on
    the fast path only (the reference path stays fp32 on a CPU).
    """
    if config.precision != "auto":
        return config.precision == "bf16"
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and config.fast_path and cpu_native_bf16()


def base_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """The frozen base weights' dtype: bf16 on a CUDA run in bf16 (half the memory), else fp32."""
    if device.type == "cuda" and train_bf16(config, device):
        return torch.bfloat16
    return torch.float32
