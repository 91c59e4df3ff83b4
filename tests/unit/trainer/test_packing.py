"""Packing: rows respect the budget, and a packed step equals a padded one exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.encoding import IGNORE_INDEX, EncodedSample
from trainer.lora import step_backward
from trainer.packing import collate_packed, pack_samples

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
