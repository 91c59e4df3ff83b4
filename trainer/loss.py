"""Per-sample weighted, assistant-only loss that is exact under gradient accumulation.

A weight is a sample's *influence*: the loss of an optimizer step is

    Σ_s w_s · mean_t CE(s, t) / Σ_s w_s

over every sample s of the whole accumulated batch, where the mean runs over
the n_s assistant tokens of s. A long sample (a Chinese reply takes more tokens
than its English twin) weighs no more than a short one at the same weight, so
the dataset's weights, its problem cap and its shares (all counted in Σ w_s)
say how much each sample moves the adapter. Each micro-batch contributes its
numerator divided by the step's total Σ w_s, so the summed micro-batch
gradients equal the full-batch gradient exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.encoding import IGNORE_INDEX, EncodedSample


@dataclass(frozen=True)
class Batch:
    """A padded micro-batch (right padding)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        return Batch(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.labels, self.weights)
            )
        )


def collate(samples: Sequence[EncodedSample], *, pad_id: int) -> Batch:
    """Pad samples to the longest one; padding carries no attention and no loss."""
    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        length = len(sample.input_ids)
        ids[row, :length] = torch.tensor(sample.input_ids)
        labels[row, :length] = torch.tensor(sample.labels)
        mask[row, :length] = 1
    weights = torch.tensor([s.weight for s in samples], dtype=torch.float32)
    return Batch(ids, mask, labels, weights)


def total_influence(samples: Sequence[EncodedSample]) -> float:
    """Σ_s w_s: the denominator of a step's loss."""
    return sum(s.weight for s in samples)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy after the causal shift, and the mask of trained tokens."""
    shifted = labels[:, 1:]
    per_token = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return per_token, shifted != IGNORE_INDEX


def weighted_loss_sum(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Σ_s w_s · mean_t CE(s, t) over one micro-batch (the numerator)."""
    per_token, mask = token_losses(logits, batch.labels)
    tokens = mask.sum(dim=1).clamp(min=1)
    return (per_token.sum(dim=1) / tokens * batch.weights).sum()
