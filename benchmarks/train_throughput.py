"""LoRA training throughput of the trainer's own path: reference (baseline) vs default.

Trains SmolLM2-135M-Instruct (the pinned base, resolved as a cycle resolves it) with
``trainer.lora.train_adapter`` on real chat rows encoded by ``trainer.encoding``: the
demo scenario's trainable prompts with their reference replies, or the train split
of a cycle's dataset (``--dataset-dir``). The *baseline* is the reference path
(``fast_path=false``: fp32, logits at every token, micro-batches in shuffled order);
the *default* is ``TrainConfig()`` as a cycle runs it. Both train the same steps
from the same seed. Their final loss is measured the same way for both once training
ends: the mean assistant-token loss over every training sample, in fp32 with full
logits (``trainer.evaluation.assistant_loss``). The last step's batch loss would not
do: the default path groups micro-batches by length, so its last step trains other
samples than the baseline's shuffled one (it is printed too, as ``last_step``).

The machine may be shared, so the two alternate within this one process, ``--rounds``
times each, and each rate is the sum over its rounds (the first step of every run,
a warm-up, left out). The load average and the CPU share the process got are printed
next to the result, so contention is visible. On CUDA it also measures a
Qwen2-0.5B-shaped model with random weights, bf16, on the packed path, and prints
tokens/s and MFU against the GPU's peak.

On a shared machine pass ``--threads 1``: with two OpenMP threads on two busy cores
a thread that loses its core stalls the other at every barrier (measured: under 15
tokens/s at load 4 on 2 cores, against about 60 with one thread).

    python benchmarks/train_throughput.py                   # SmolLM2 on this machine
    python benchmarks/train_throughput.py --threads 1       # a shared machine
    python benchmarks/train_throughput.py --steps 6 --rounds 3
    python benchmarks/train_throughput.py --dataset-dir .loraloop/demo/datasets/<name>
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from loraloop.settings import Settings
from loraloop.simulation.scenario import scenario_items
from trainer.base_model import IDENTITY_FILE, BaseModelRef, load_base, resolve_base_model
from trainer.config import TrainConfig
from trainer.dataset import SPLIT_TRAIN
from trainer.encoding import EncodedSample, encode_rows
from trainer.evaluation import assistant_loss
from trainer.lora import StepInfo, attach_adapter, step_backward, train_adapter
from trainer.manifest import read_rows
from trainer.precision import cpu_native_bf16, train_bf16
from trainer.schedule import resolve_device

#: Dense bf16 peak TFLOP/s by device-name fragment (no sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
QWEN2_05B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
DEMO_MAX_SEQ_LEN = 256
"""The demo's ``train_max_seq_len`` (its replies are far shorter)."""


@dataclass
class Timing:
    """Tokens and seconds summed over the timed steps of every round of one path."""

    tokens: int = 0
    seconds: float = 0.0
    final_losses: list[float] = field(default_factory=list)
    last_step_losses: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def scenario_rows() -> list[dict[str, Any]]:
    """The demo scenario's trainable prompts with their reference replies."""
    return [
        {
            "sample_id": item.item_id,
            "weight": 1.0,
            "messages": [
                {"role": "user", "content": item.text},
                {"role": "assistant", "content": item.reference},
            ],
        }
        for item in scenario_items()
        if not item.evaluation
    ]


def training_rows(dataset_dir: Path | None) -> list[dict[str, Any]]:
    if dataset_dir is None:
        return scenario_rows()
    return [row for row in read_rows(dataset_dir) if row["split"] == SPLIT_TRAIN]


def base_cache() -> Path:
    """The converted base model a cycle or the demo left (converted here if none)."""
    data_dir = Settings().data_dir
    candidates = [data_dir / "cache" / "base-model", data_dir / "demo" / "cache" / "base-model"]
    return next((c for c in candidates if (c / IDENTITY_FILE).is_file()), candidates[0])


def timed_run(
    ref: BaseModelRef, samples: list[EncodedSample], config: TrainConfig, pad_id: int
) -> tuple[int, float, float, float]:
    """(tokens, seconds, final loss, last step's loss) of one training run, its first step
    left out of the timing; the final loss is over every sample, after training."""
    base, _ = load_base(ref)
    model = attach_adapter(base, config)
    marks: list[tuple[float, int]] = []

    def on_step(info: StepInfo) -> None:
        marks.append((time.perf_counter(), info.tokens))

    metrics = train_adapter(model, samples, config=config, pad_id=pad_id, on_step=on_step)
    tokens = sum(done for _, done in marks[1:])
    model.eval()
    final = assistant_loss(model, samples, pad_id=pad_id, batch_size=config.batch_size)
    assert final is not None
    return tokens, marks[-1][0] - marks[0][0], final, metrics.losses[-1]


def smollm2(args: argparse.Namespace) -> None:
    """Baseline and default path on SmolLM2-135M, alternating, one result line."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    ref = resolve_base_model(base_model=args.base_model, cache_dir=args.cache or base_cache())
    _, tokenizer = load_base(ref)
    common: dict[str, Any] = {
        "max_seq_len": args.max_seq_len,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_steps": args.steps + 1,
        "progress": False,
        "device": "cpu",
    }
    configs = {
        "baseline": TrainConfig(fast_path=False, **common),
        "default": TrainConfig(**common),
    }
    samples = encode_rows(tokenizer, training_rows(args.dataset_dir), max_seq_len=args.max_seq_len)
    trained = sum(s.assistant_tokens for s in samples) / sum(len(s.input_ids) for s in samples)
    print(
        f"{ref.name}: {len(samples)} samples, {trained:.0%} of tokens trained; "
        f"batch {args.batch_size} x accum {args.grad_accum}, {args.steps} timed steps x "
        f"{args.rounds} rounds; {torch.get_num_threads()} threads; native cpu bf16: "
        f"{cpu_native_bf16()} (default bf16: {train_bf16(configs['default'], torch.device('cpu'))})"
    )
    timings = {name: Timing() for name in configs}
    load_before, wall, cpu = os.getloadavg()[0], time.perf_counter(), time.process_time()
    for round_index in range(args.rounds):
        for name, config in configs.items():
            tokens, seconds, final, last = timed_run(ref, samples, config, tokenizer.pad_token_id)
            timing = timings[name]
            timing.tokens, timing.seconds = timing.tokens + tokens, timing.seconds + seconds
            timing.final_losses.append(final)
            timing.last_step_losses.append(last)
            print(
                f"  round {round_index + 1} {name}: {tokens / seconds:,.1f} tokens/s, "
                f"final loss {final:.4f} (last step {last:.4f})"
            )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    base, default = timings["baseline"], timings["default"]
    print(
        f"contention: load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after on "
        f"{os.cpu_count()} cores; this process got {cpu / wall:.2f} cores of "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"train cpu: baseline_tokens_per_s={base.rate:.1f} default_tokens_per_s={default.rate:.1f} "
        f"ratio={default.rate / base.rate:.2f} baseline_final_loss={base.final_losses[-1]:.4f} "
        f"default_final_loss={default.final_losses[-1]:.4f}"
    )
    gap = default.final_losses[-1] / base.final_losses[-1] - 1
    print(f"final loss: default vs baseline {gap:+.2%} (over all {len(samples)} samples)")


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
    return float(4.0 * params + attention)


def qwen2_packed(args: argparse.Namespace) -> None:
    """Tokens/s and MFU of LoRA on a Qwen2-0.5B-shaped model, bf16, packed path (CUDA)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from trainer.schedule import flash_attention_available

    attention = "flash_attention_2" if flash_attention_available() else "sdpa"
    torch.manual_seed(0)
    shape: Any = Qwen2Config(**{**QWEN2_05B, "attn_implementation": attention})
    model: Any = Qwen2ForCausalLM(shape)  # type: ignore[no-untyped-call]
    model = model.to(torch.bfloat16)
    model.requires_grad_(False)
    config = TrainConfig(batch_size=args.batch_size, grad_accum=1, progress=False)
    peft_model = attach_adapter(model, config).to("cuda").train()
    bf16 = train_bf16(config, resolve_device("cuda"))
    generator = torch.Generator().manual_seed(0)
    seq_len = args.cuda_seq_len
    tokens, started = 0, 0.0
    for step in range(args.steps + 1):
        ids = torch.randint(
            QWEN2_05B["vocab_size"], (args.batch_size, seq_len), generator=generator
        )
        micro = [
            [
                EncodedSample(f"{step}-{i}", row.tolist(), row.tolist(), 1.0)
                for i, row in enumerate(ids)
            ]
        ]
        if step == 1:
            torch.cuda.synchronize()
            started = time.perf_counter()
        _, done = step_backward(
            peft_model, micro, pad_id=0, bf16=bf16, pack_len=seq_len, head_only_trained=True
        )
        tokens += done if step else 0
    torch.cuda.synchronize()
    rate = tokens / (time.perf_counter() - started)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    achieved = rate * lora_flops_per_token(peft_model, seq_len) / 1e12
    mfu = f"{achieved / peak:.1%}" if peak else "unknown"
    print(
        f"train cuda: packed_tokens_per_s={rate:.0f} mfu={mfu} attention={attention} "
        f"device={name!r} batch={args.batch_size}x{seq_len}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two paths")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=DEMO_MAX_SEQ_LEN)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--dataset-dir", type=Path, default=None, help="a cycle's dataset")
    parser.add_argument("--base-model", default="", help="local checkpoint (default SmolLM2)")
    parser.add_argument("--cache", type=Path, default=None, help="converted base model cache")
    parser.add_argument("--cuda-seq-len", type=int, default=1024)
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA measurement")
    args = parser.parse_args()
    if not args.skip_cpu:
        smollm2(args)
    if torch.cuda.is_available():
        qwen2_packed(args)


if __name__ == "__main__":
    main()
