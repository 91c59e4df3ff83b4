"""Offline measurements for the gate: assistant-token loss and greedy probe generations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """The conversation without its final assistant reply: what the model must answer."""
    context = list(messages)
    while context and context[-1]["role"] == ASSISTANT:
        context.pop()
    return context


@torch.no_grad()
def greedy_generate(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[Mapping[str, str]]], *, max_new: int
) -> list[list[int]]:
    """Greedy continuation token ids of each prompt (one at a time: no padding effects)."""
    device = next(model.parameters()).device
    outputs = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = ids.to(device)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        outputs.append([int(t) for t in out[0, ids.shape[1] :]])
    return outputs
