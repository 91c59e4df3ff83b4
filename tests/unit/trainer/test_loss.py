"""The weighted loss is exact under gradient accumulation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.config import TrainConfig
from trainer.encoding import EncodedSample, encode_row
from trainer.lora import attach_adapter, step_backward
from trainer.loss import collate, token_losses, weighted_loss_sum

MESSAGES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}],
    [
        {"role": "user", "content": "How much is the pro plan?"},
        {"role": "assistant", "content": "The pro plan costs 9 dollars a month, billed yearly."},
    ],
    [{"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "You are welcome!"}],
    [
        {"role": "user", "content": "Can you promise a refund?"},
        {"role": "assistant", "content": "I cannot promise that."},
    ],
]
WEIGHTS = [1.0, 0.7, 0.5, 0.3]


@pytest.fixture
def samples(tiny_tokenizer: Any) -> list[EncodedSample]:
    rows = [
        {"messages": m, "weight": w, "sample_id": str(i)}
        for i, (m, w) in enumerate(zip(MESSAGES, WEIGHTS, strict=True))
    ]
    return [encode_row(tiny_tokenizer, row, max_seq_len=128) for row in rows]


def _peft_model(checkpoint: Path) -> Any:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(checkpoint)
    return attach_adapter(base, TrainConfig(lora_dropout=0.0, seed=1))


def _live_peft_model(checkpoint: Path) -> Any:
    """An adapter whose lora_B is non-zero, so every adapter parameter gets a gradient."""
    model = _peft_model(checkpoint)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model


def _grads(model: Any) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


def test_accumulated_micro_batches_give_the_full_batch_gradient(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _live_peft_model(tiny_checkpoint)
    pad = tiny_tokenizer.pad_token_id
    full_loss, _ = step_backward(model, [samples], pad_id=pad, bf16=False)
    full = _grads(model)
    model.zero_grad()
    accum_loss, _ = step_backward(model, [samples[:2], samples[2:]], pad_id=pad, bf16=False)
    accum = _grads(model)
    assert accum_loss == pytest.approx(full_loss, rel=1e-5)
    for a, b in zip(full, accum, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in full)


def test_loss_is_weighted_mean_over_assistant_tokens(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _peft_model(tiny_checkpoint)
    batch = collate(samples, pad_id=tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        numerator = float(weighted_loss_sum(logits, batch))
        per_token, mask = token_losses(logits, batch.labels)
    expected = sum(w * float(per_token[i][mask[i]].sum()) for i, w in enumerate(WEIGHTS))
    assert numerator == pytest.approx(expected, rel=1e-5)
    assert [int(m.sum()) for m in mask] == [s.assistant_tokens for s in samples]
    # Padding adds no loss: a shorter sample alone gives its own term.
    single = collate(samples[:1], pad_id=tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        alone = model(input_ids=single.input_ids, attention_mask=single.attention_mask).logits
    assert float(weighted_loss_sum(alone, single)) == pytest.approx(
        WEIGHTS[0] * float(per_token[0][mask[0]].sum()), rel=1e-4
    )
