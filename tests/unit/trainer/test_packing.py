"""Packing: a micro-batch is one packed row (the only layout FlashAttention reads as
packed), and a packed step equals a padded one exactly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from trainer.encoding import IGNORE_INDEX, EncodedSample
from trainer.exceptions import TrainerError
from trainer.lora import step_backward
from trainer.packing import collate_packed, pack_micro_batch, pack_samples, varlen_kwargs

from .test_loss import _grads, _live_peft_model, samples

__all__ = ["samples"]  # the fixture, shared with test_loss


def _sample(i: int, length: int, weight: float) -> EncodedSample:
    ids = [(7 * i + t) % 50 + 3 for t in range(length)]
    labels = [IGNORE_INDEX] * (length // 2) + ids[length // 2 :]
    return EncodedSample(f"s{i}", ids, labels, weight)


def test_rows_respect_the_budget_and_restart_positions() -> None:
    samples = [_sample(i, n, 1.0) for i, n in enumerate([5, 4, 7, 3, 12])]
    rows = pack_samples(samples, max_len=10)
    assert [r.lengths for r in rows] == [[5, 4], [7, 3], [12]]
    assert rows[0].position_ids == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert rows[0].labels[5] == IGNORE_INDEX  # nothing is predicted across a boundary
    batch = collate_packed(rows, pad_id=0)
    assert batch.input_ids.shape == (3, 12)
    assert float(batch.token_weights[0, 9:].sum()) == 0.0  # padding carries no loss


def test_packed_step_gives_the_padded_gradient(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _live_peft_model(tiny_checkpoint)
    pad = tiny_tokenizer.pad_token_id
    budget = sum(len(s.input_ids) for s in samples)  # everything in one row
    padded_loss, _ = step_backward(model, [samples], pad_id=pad, bf16=False)
    padded = _grads(model)
    model.zero_grad()
    packed_loss, _ = step_backward(model, [samples], pad_id=pad, bf16=False, pack_len=budget)
    packed = _grads(model)
    assert packed_loss == pytest.approx(padded_loss, rel=1e-4)
    for a, b in zip(padded, packed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_a_micro_batch_packs_into_one_row() -> None:
    # The audit's case: 8 samples of 300 tokens used to become 3 rows of 900, which
    # transformers' flash path does not read as packed (it needs batch size 1).
    samples = [_sample(i, 300, 1.0) for i in range(8)]
    batch = pack_micro_batch(samples, pad_id=0)
    assert batch.input_ids.shape == (1, 2400)
    assert batch.lengths == ((300,) * 8,)
    assert batch.position_ids[0, 299:301].tolist() == [299, 0]
    kwargs = varlen_kwargs(batch)
    assert kwargs["cu_seq_lens_q"].tolist() == list(range(0, 2401, 300))
    assert kwargs["cu_seq_lens_q"].dtype == torch.int32
    assert kwargs["max_length_q"] == kwargs["max_length_k"] == 300


def test_varlen_arguments_refuse_several_rows() -> None:
    rows = pack_samples([_sample(i, 6, 1.0) for i in range(3)], max_len=10)
    with pytest.raises(TrainerError, match="one row"):
        varlen_kwargs(collate_packed(rows, pad_id=0))


class _FlashSpy(torch.nn.Module):
    """A stand-in causal LM configured for FlashAttention 2 that records its inputs."""

    def __init__(self, vocab: int = 60, width: int = 8) -> None:
        super().__init__()
        self.config = SimpleNamespace(_attn_implementation="flash_attention_2")
        self.embed = torch.nn.Embedding(vocab, width)
        self.head = torch.nn.Linear(width, vocab)
        self.calls: list[dict[str, Any]] = []

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> SimpleNamespace:
        self.calls.append({"input_ids": input_ids, **kwargs})
        return SimpleNamespace(logits=self.head(self.embed(input_ids)))


@pytest.mark.parametrize("head_only_trained", [False, True])
def test_flash_packed_step_is_one_row_with_cumulative_lengths(head_only_trained: bool) -> None:
    spy = _FlashSpy()
    samples = [_sample(i, n, 1.0) for i, n in enumerate([5, 4, 7, 3, 12])]
    micro = [samples[:3], samples[3:]]
    step_backward(
        spy, micro, pad_id=0, bf16=False, pack_len=10, head_only_trained=head_only_trained
    )
    assert [call["input_ids"].shape for call in spy.calls] == [(1, 16), (1, 15)]
    first = spy.calls[0]
    assert "attention_mask" not in first  # boundaries come from the lengths, not a mask
    assert first["cu_seq_lens_q"].tolist() == [0, 5, 9, 16]
    assert first["position_ids"][0].tolist() == [*range(5), *range(4), *range(7)]
    assert spy.head.weight.grad is not None


@pytest.mark.gpu
def test_flash_attention_packed_step_gives_the_padded_loss_on_cuda(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    from transformers import AutoModelForCausalLM

    from trainer.config import TrainConfig
    from trainer.lora import attach_adapter
    from trainer.schedule import flash_attention_available

    if not (torch.cuda.is_available() and flash_attention_available()):
        pytest.fail(
            "this gpu-marked test needs CUDA with FlashAttention 2 (pip install flash-attn); "
            "make test leaves it out, run it with `pytest -m gpu` on such a machine"
        )
    base = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoint, dtype=torch.bfloat16, attn_implementation="flash_attention_2"
    )
    model = attach_adapter(base, TrainConfig(lora_dropout=0.0, seed=1)).to("cuda")
    pad = tiny_tokenizer.pad_token_id
    budget = max(len(s.input_ids) for s in samples)  # the old layout: several rows
    padded_loss, _ = step_backward(model, [samples], pad_id=pad, bf16=True)
    packed_loss, _ = step_backward(model, [samples], pad_id=pad, bf16=True, pack_len=budget)
    assert packed_loss == pytest.approx(padded_loss, rel=2e-2)
