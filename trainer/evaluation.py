"""Offline measurements for the gate: assistant-token loss and batched greedy replies."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from trainer.encoding import ASSISTANT, EncodedSample
from trainer.loss import collate, token_losses


@torch.no_grad()
def assistant_loss(
    model: Any, samples: Sequence[EncodedSample], *, pad_id: int, batch_size: int
) -> float | None:
    """Mean cross-entropy over every assistant token of ``samples`` (None when empty)."""
    if not samples:
        return None
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(samples), batch_size):
        batch = collate(samples[start : start + batch_size], pad_id=pad_id).to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        per_token, mask = token_losses(logits, batch.labels)
        total += float(per_token.sum())
        count += int(mask.sum())
    return total / count if count else None


def probe_prompt(messages: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The conversation without its final assistant reply(ies): what the model must answer."""
    context = list(messages)
    while context and context[-1]["role"] == ASSISTANT:
        context.pop()
    return context


@torch.no_grad()
def generate_replies(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[Mapping[str, str]]],
    *,
    max_new: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy reply text of each prompt, generated ``batch_size`` prompts at a time.

    Prompts are left-padded (the tokenizer's padding side is restored afterwards), so
    every row's continuation starts at the same column; ``generate`` derives position
    ids from the attention mask, so a padded row decodes like the same prompt alone up
    to floating-point rounding. ``on_batch`` is told how many prompts each batch held.
    """
    device = next(model.parameters()).device
    replies: list[str] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            replies += _generate_batch(model, tokenizer, chunk, max_new=max_new, device=device)
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        tokenizer.padding_side = side
    return replies


def _generate_batch(
    model: Any,
    tokenizer: Any,
    chunk: Sequence[Sequence[Mapping[str, str]]],
    *,
    max_new: int,
    device: torch.device,
) -> list[str]:
    texts = [
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        for messages in chunk
    ]
    batch = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True)
    batch = batch.to(device)
    out = model.generate(
        **batch, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    width = batch["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
