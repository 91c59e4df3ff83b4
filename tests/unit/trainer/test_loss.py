"""The loss weighs samples by influence (w_s · mean token loss) and is exact under
gradient accumulation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.config import TrainConfig
from trainer.encoding import IGNORE_INDEX, EncodedSample, encode_row
from trainer.lora import attach_adapter, step_backward
from trainer.loss import collate, token_losses, total_influence, weighted_loss_sum

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


def test_loss_is_the_weighted_sum_of_per_sample_mean_token_losses(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _peft_model(tiny_checkpoint)
    batch = collate(samples, pad_id=tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        numerator = float(weighted_loss_sum(logits, batch))
        per_token, mask = token_losses(logits, batch.labels)
    expected = sum(w * float(per_token[i][mask[i]].mean()) for i, w in enumerate(WEIGHTS))
    assert numerator == pytest.approx(expected, rel=1e-5)
    assert [int(m.sum()) for m in mask] == [s.assistant_tokens for s in samples]
    assert total_influence(samples) == pytest.approx(sum(WEIGHTS))
    # Padding adds no loss: a shorter sample alone gives its own term.
    single = collate(samples[:1], pad_id=tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        alone = model(input_ids=single.input_ids, attention_mask=single.attention_mask).logits
    assert float(weighted_loss_sum(alone, single)) == pytest.approx(
        WEIGHTS[0] * float(per_token[0][mask[0]].mean()), rel=1e-4
    )


VOCAB = 11


def _synthetic(sample_id: str, assistant_tokens: int, weight: float) -> EncodedSample:
    """A prompt token and ``assistant_tokens`` trained tokens (one more label, never used)."""
    ids = [1 + t % (VOCAB - 1) for t in range(assistant_tokens + 1)]
    return EncodedSample(sample_id, ids, [IGNORE_INDEX, *ids[1:]], weight)


def _term(sample: EncodedSample) -> float:
    """The sample's share of a step's loss numerator, with uniform logits (CE = ln V each)."""
    batch = collate([sample], pad_id=0)
    logits = torch.zeros((*batch.input_ids.shape, VOCAB))
    return float(weighted_loss_sum(logits, batch))


def test_twice_the_tokens_at_the_same_weight_is_the_same_influence() -> None:
    short, long = _synthetic("short", 12, 1.0), _synthetic("long", 24, 1.0)
    assert long.assistant_tokens == 2 * short.assistant_tokens
    assert _term(long) == pytest.approx(_term(short), rel=1e-6)


def test_a_long_problem_at_half_weight_has_half_a_core_samples_influence() -> None:
    # A Chinese problem reply takes more tokens than an English core one (about 68 vs 25):
    # counted per token it would outweigh the core sample; counted per sample it is half.
    core, problem = _synthetic("core", 25, 1.0), _synthetic("zh-problem", 68, 0.5)
    assert problem.weight * problem.assistant_tokens > core.weight * core.assistant_tokens
    assert _term(problem) == pytest.approx(0.5 * _term(core), rel=1e-6)
    pair = collate([core, problem], pad_id=0)
    logits = torch.zeros((*pair.input_ids.shape, VOCAB))
    step = float(weighted_loss_sum(logits, pair)) / total_influence([core, problem])
    assert step == pytest.approx(float(torch.log(torch.tensor(VOCAB))), rel=1e-6)
