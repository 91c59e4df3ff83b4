"""Offline measurements for the gate: assistant-token loss and batched greedy replies."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    """Greedy reply text of each prompt (in their order), ``batch_size`` prompts at a time.

    Batches are formed from prompts of similar length (longest first), so little of a
    batch is padding; replies are returned in the prompts' order. Prompts are
    left-padded (the tokenizer's padding side is restored afterwards), so every row's
    continuation starts at the same column; ``generate`` derives position ids from the
    attention mask, so a padded row decodes like the same prompt alone up to
    floating-point rounding. ``on_batch`` is told how many prompts each batch held.
    """
    device = next(model.parameters()).device
    texts = [_chat_text(tokenizer, messages) for messages in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    replies: dict[int, str] = {}
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out = _generate_batch(
                model, tokenizer, [texts[i] for i in chunk], max_new=max_new, device=device
            )
            replies.update(zip(chunk, out, strict=True))
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        tokenizer.padding_side = side
    return [replies[i] for i in range(len(texts))]


def _chat_text(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    text: str = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True
    )
    return text


def _generate_batch(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_new: int, device: torch.device
) -> list[str]:
    batch = tokenizer(list(texts), add_special_tokens=False, return_tensors="pt", padding=True)
    batch = batch.to(device)
    out = model.generate(
        **batch, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    width = batch["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]


@contextlib.contextmanager
def merged_adapter(model: Any) -> Iterator[Any]:
    """``model`` with its active LoRA adapter folded into the base weights while inside.

    Why: an unmerged LoRA layer adds two small matmuls (and their dispatch) to every
    adapted linear layer at every decoding step; on CPU that costs about a fifth of
    greedy generation's time. Merged, the same greedy replies come out (up to rounding)
    and the weights are unmerged on exit. Only fp32 weights are merged: folding into
    bf16 weights and back would round the base each time, so they are served unmerged.
    """
    merge = getattr(model, "merge_adapter", None)
    weight = next(model.parameters())
    if merge is None or weight.dtype != torch.float32:
        yield model
        return
    merge()
    try:
        yield model
    finally:
        model.unmerge_adapter()
