"""LoRA fine-tuning: a fresh peft adapter on the frozen base, a small exact training loop.

A custom loop rather than HF Trainer so the per-sample influence weighting
(Σ_s w_s · mean_t CE / Σ_s w_s per optimizer step) is exact under gradient
accumulation (see :mod:`trainer.loss`). Cosine schedule with warm-up,
AdamW on the adapter parameters only, rich progress with the step loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trainer.config import TrainConfig
from trainer.encoding import EncodedSample
from trainer.loss import (
    collate,
    head_at_trained,
    length_batches,
    selected_loss_sum,
    total_influence,
    weighted_loss_sum,
)
from trainer.packing import (
    block_causal_mask,
    pack_micro_batch,
    packed_loss_sum,
    packed_selected_loss_sum,
    varlen_kwargs,
)
from trainer.precision import base_dtype, train_bf16
from trainer.schedule import autocast, optimizer_steps, resolve_device, total_steps, use_packing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What one optimizer step did (handed to the ``on_step`` hook)."""

    step: int
    epoch: int
    loss: float
    learning_rate: float
    tokens: int


@dataclass
class TrainMetrics:
    """The run's numbers, written to ``metrics.json``."""

    steps: int = 0
    train_samples: int = 0
    tokens: int = 0
    assistant_tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    device: str = "cpu"
    bf16: bool = False
    packed: bool = False
    trainable_params: int = 0
    total_params: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Training throughput over every (non-padding) token processed."""
        return self.tokens / self.seconds if self.seconds else 0.0


def linear_module_names(model: Any) -> list[str]:
    """Short names of every linear layer but the output head: what ``all-linear`` means.

    Resolved here, rather than by peft, so ``adapter_config.json`` lists short names
    (``q_proj``, ...) as adapters for multi-LoRA servers usually do.
    """
    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )


def lora_config(config: TrainConfig, model: Any) -> Any:
    """The peft ``LoraConfig`` for a causal LM (no ``modules_to_save``)."""
    from peft import LoraConfig

    targets = config.target_modules_value
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=linear_module_names(model) if targets == "all-linear" else targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_adapter(base_model: Any, config: TrainConfig) -> Any:
    """Wrap the frozen base with a freshly initialised, seeded LoRA adapter."""
    from peft import get_peft_model

    torch.manual_seed(config.seed)
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs; the input-grad hook lets
        # gradients reach the adapters through checkpointed blocks of a frozen base.
        base_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        base_model.enable_input_require_grads()
    return get_peft_model(base_model, lora_config(config, base_model))


def step_backward(
    model: Any,
    micro: Sequence[Sequence[EncodedSample]],
    *,
    pad_id: int,
    bf16: bool,
    pack_len: int | None = None,
    head_only_trained: bool = False,
) -> tuple[float, int]:
    """Accumulate one optimizer step's gradients; return (step loss, tokens).

    With ``pack_len`` each micro-batch is packed into one row (``pack_len`` is kept
    for the callers that size it; the row holds the whole micro-batch). With
    ``head_only_trained`` the output head runs only at trained positions.
    """
    device = next(p for p in model.parameters() if p.requires_grad).device
    denominator = total_influence([s for batch in micro for s in batch])
    if pack_len is not None:
        return _packed_step(model, micro, pad_id, bf16, head_only_trained, denominator, device)
    total, tokens = 0.0, 0
    for samples in micro:
        batch = collate(samples, pad_id=pad_id).to(device)
        if head_only_trained:
            with autocast(device, bf16), head_at_trained(model, batch.labels):
                logits = model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
                ).logits
            numerator = selected_loss_sum(logits, batch)
        else:
            with autocast(device, bf16):
                logits = model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask
                ).logits
            numerator = weighted_loss_sum(logits, batch)
        loss = numerator / denominator
        loss.backward()  # type: ignore[no-untyped-call]
        total += float(loss.detach())
        tokens += int(batch.attention_mask.sum())
    return total, tokens


def _packed_step(
    model: Any,
    micro: Sequence[Sequence[EncodedSample]],
    pad_id: int,
    bf16: bool,
    head_only_trained: bool,
    denominator: float,
    device: torch.device,
) -> tuple[float, int]:
    flash = getattr(model.config, "_attn_implementation", "") == "flash_attention_2"
    total, tokens = 0.0, 0
    for samples in micro:
        batch = pack_micro_batch(samples, pad_id=pad_id).to(device)
        # FlashAttention takes the sample boundaries from the cumulative lengths (and
        # the restarting position_ids of the one row); other kernels need the explicit
        # block-diagonal mask.
        extra: dict[str, Any] = (
            varlen_kwargs(batch)
            if flash
            else {"attention_mask": block_causal_mask(batch, torch.float32).to(device)}
        )
        inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids, **extra}
        if head_only_trained:
            with autocast(device, bf16), head_at_trained(model, batch.labels):
                logits = model(**inputs, use_cache=False).logits
            numerator = packed_selected_loss_sum(logits, batch)
        else:
            with autocast(device, bf16):
                logits = model(**inputs).logits
            numerator = packed_loss_sum(logits, batch)
        loss = numerator / denominator
        loss.backward()  # type: ignore[no-untyped-call]
        total += float(loss.detach())
        tokens += sum(sum(lengths) for lengths in batch.lengths)
    return total, tokens


def regroup_by_length(
    micro: Sequence[Sequence[EncodedSample]], config: TrainConfig
) -> list[list[EncodedSample]]:
    """The fast path's micro-batches of one step: the same samples cut by length."""
    return length_batches(
        [s for batch in micro for s in batch], max_tokens=config.micro_batch_tokens_value
    )


def freeze_in_dtype(model: Any, dtype: torch.dtype) -> None:
    """Cast the frozen (base) floating-point weights to ``dtype``; the adapter stays fp32.

    Called before the move to the device, so a 7B base in bf16 on CUDA takes 15 GB of
    GPU memory, not 30.
    """
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def train_adapter(
    model: Any,
    samples: Sequence[EncodedSample],
    *,
    config: TrainConfig,
    pad_id: int,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainMetrics:
    """Train the adapter of ``model`` (a peft model) on ``samples``; return the metrics."""
    from transformers import get_cosine_schedule_with_warmup

    device = resolve_device(config.device)
    bf16 = train_bf16(config, device)
    pack_len = config.max_seq_len if use_packing(config, device) else None
    fast = config.fast_path
    freeze_in_dtype(model, base_dtype(config, device))
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = total_steps(len(samples), config)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(config.warmup_ratio * steps), max(steps, 1)
    )
    metrics = TrainMetrics(
        train_samples=len(samples),
        device=str(device),
        bf16=bf16,
        packed=pack_len is not None,
        trainable_params=sum(p.numel() for p in params),
        total_params=sum(p.numel() for p in model.parameters()),
    )
    started = time.perf_counter()
    with _progress(config.progress) as progress:
        task = progress.add_task("train", total=steps, loss=float("nan"))
        for epoch, micro in optimizer_steps(samples, config):
            if fast and pack_len is None:
                micro = regroup_by_length(micro, config)
            loss, tokens = step_backward(
                model, micro, pad_id=pad_id, bf16=bf16, pack_len=pack_len, head_only_trained=fast
            )
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            learning_rate = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            metrics.steps += 1
            metrics.tokens += tokens
            metrics.assistant_tokens += sum(s.assistant_tokens for b in micro for s in b)
            metrics.losses.append(loss)
            progress.update(task, advance=1, loss=loss)
            logger.debug("step %s epoch %s loss %.4f", metrics.steps, epoch, loss)
            if on_step is not None:
                on_step(StepInfo(metrics.steps, epoch, loss, learning_rate, tokens))
    metrics.seconds = time.perf_counter() - started
    model.eval()
    return metrics
