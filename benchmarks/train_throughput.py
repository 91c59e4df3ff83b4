"""LoRA training throughput: tokens/s on SmolLM2-135M (CPU or CUDA), and MFU on CUDA.

Runs a few optimizer steps of the trainer's own loop (``trainer.lora.step_backward``,
the exact weighted loss) on random token sequences, every token trained, after one
warm-up step. On CUDA it also measures a Qwen2-0.5B-shaped model with random
weights in bf16 and reports model FLOPs utilisation (MFU) against the GPU's peak.

    python benchmarks/train_throughput.py                  # SmolLM2 on this machine
    python benchmarks/train_throughput.py --seq-len 512 --steps 5
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from loraloop.settings import Settings
from trainer.base_model import load_base, resolve_base_model
from trainer.config import TrainConfig
from trainer.encoding import EncodedSample
from trainer.lora import attach_adapter, step_backward
from trainer.schedule import resolve_device, use_bf16

#: Dense bf16 peak TFLOP/s by device-name fragment (no sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
QWEN2_05B = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


def random_samples(count: int, seq_len: int, vocab: int, seed: int) -> list[EncodedSample]:
    """Random full-length samples whose every token carries loss."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not crypto
    samples = []
    for index in range(count):
        ids = [rng.randrange(vocab) for _ in range(seq_len)]
        samples.append(EncodedSample(str(index), ids, list(ids), 1.0))
    return samples


def lora_flops_per_token(model: Any, seq_len: int) -> float:
    """Forward + input-gradient backward of the frozen base (4·N) plus attention scores.

    LoRA computes no weight gradient for the frozen base, so a token costs about
    2N (forward) + 2N (backward to activations) FLOPs, plus 3 x 4·L·T·d for attention.
    The adapter's own FLOPs are negligible at rank 16.
    """
    config = model.config
    params = (
        sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    )
    attention = 3 * 4 * config.num_hidden_layers * seq_len * config.hidden_size / 2  # causal
    return 4.0 * params + attention


def measure(model: Any, *, config: TrainConfig, seq_len: int, steps: int, vocab: int) -> float:
    """Training tokens per second over ``steps`` optimizer steps after one warm-up."""
    device = resolve_device(config.device)
    bf16 = use_bf16(config, device)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    per_step = config.batch_size * config.grad_accum
    samples = random_samples(per_step * (steps + 1), seq_len, vocab, config.seed)
    tokens, started = 0, 0.0
    for step in range(steps + 1):
        chunk = samples[step * per_step : (step + 1) * per_step]
        micro = [chunk[i : i + config.batch_size] for i in range(0, per_step, config.batch_size)]
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        _, done = step_backward(model, micro, pad_id=0, bf16=bf16)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += done if step else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - started)


def smollm2(args: argparse.Namespace) -> None:
    """Throughput of LoRA on the real SmolLM2-135M-Instruct."""
    cache = args.cache or Settings().data_dir / "cache" / "base-model"
    started = time.perf_counter()
    ref = resolve_base_model(base_model=args.base_model, cache_dir=cache)
    model, _ = load_base(ref)
    print(f"base model {ref.name}: resolved and loaded in {time.perf_counter() - started:.1f} s")
    config = TrainConfig(batch_size=args.batch_size, grad_accum=1, progress=False)
    peft_model = attach_adapter(model, config)
    rate = measure(
        peft_model,
        config=config,
        seq_len=args.seq_len,
        steps=args.steps,
        vocab=model.config.vocab_size,
    )
    device = resolve_device(config.device)
    print(
        f"SmolLM2-135M LoRA r={config.lora_r} on {device} ({torch.get_num_threads()} threads), "
        f"batch {args.batch_size} x {args.seq_len} tokens: {rate:,.0f} tokens/s"
    )
    if device.type == "cuda":
        report_mfu(peft_model, rate, args.seq_len)


def report_mfu(model: Any, rate: float, seq_len: int) -> None:
    """Print achieved TFLOP/s and MFU against the device's bf16 peak."""
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    achieved = rate * lora_flops_per_token(model, seq_len) / 1e12
    mfu = f"{achieved / peak:.1%} of {peak:.0f}" if peak else "unknown peak"
    print(f"  {name}: {achieved:.1f} TFLOP/s achieved, MFU {mfu}")


def qwen2_shape(args: argparse.Namespace) -> None:
    """Throughput and MFU of LoRA on a Qwen2-0.5B-shaped model with random weights (CUDA)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**QWEN2_05B)).to(torch.bfloat16)
    model.requires_grad_(False)
    config = TrainConfig(batch_size=args.batch_size, grad_accum=1, progress=False)
    peft_model = attach_adapter(model, config)
    rate = measure(
        peft_model,
        config=config,
        seq_len=args.seq_len,
        steps=args.steps,
        vocab=QWEN2_05B["vocab_size"],
    )
    print(
        f"Qwen2-0.5B-shaped LoRA, bf16, batch {args.batch_size} x {args.seq_len}: "
        f"{rate:,.0f} tokens/s"
    )
    report_mfu(peft_model, rate, args.seq_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--base-model", default="", help="local checkpoint (default SmolLM2)")
    parser.add_argument("--cache", type=Path, default=None, help="converted base model cache")
    args = parser.parse_args()
    smollm2(args)
    if torch.cuda.is_available():
        qwen2_shape(args)


if __name__ == "__main__":
    main()
