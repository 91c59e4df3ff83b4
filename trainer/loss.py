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

The output head need only run where a token is trained: :func:`head_at_trained`
hands the head the hidden states of those positions alone (40–55 % of a chat
sample is system or user text), and :func:`selected_loss_sum` gives the same
numerator from those logits as :func:`weighted_loss_sum` from the full ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from trainer.encoding import IGNORE_INDEX, EncodedSample
from trainer.exceptions import TrainerError


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


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """(rows, L) bool: the positions whose next token is trained (the last never is)."""
    positions = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    positions[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return positions


@contextmanager
def head_at_trained(model: Any, labels: torch.Tensor) -> Iterator[torch.Tensor]:
    """Within the block the output head sees only the trained positions' hidden states.

    The model's ``logits`` are then (n, vocab), the n trained positions in row-major
    order; the yielded mask says which they are. Whatever the model does after its
    head (a soft cap, a logit scale) is per element, so it holds for the rows kept.
    """
    positions = trained_positions(labels)

    def select(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if hidden.shape[:2] != positions.shape:
            msg = (
                f"the output head got hidden states of shape {tuple(hidden.shape)} for a batch "
                f"of {tuple(positions.shape)}: set LORALOOP_TRAIN__FAST_PATH=false for this model"
            )
            raise TrainerError(msg)
        return (hidden[positions], *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(select)
    try:
        yield positions
    finally:
        handle.remove()


def selected_loss_sum(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """:func:`weighted_loss_sum` from the logits of the trained positions only.

    ``logits`` is (n, vocab) in the order of :func:`trained_positions`; the per-token
    losses go back to their (row, position) places so the per-sample means are
    reduced exactly as the full-logits loss reduces them.
    """
    positions = trained_positions(batch.labels)[:, :-1]
    targets = batch.labels[:, 1:][positions]
    if logits.shape[0] != targets.shape[0]:
        msg = (
            f"got logits for {logits.shape[0]} positions, {targets.shape[0]} are trained: "
            "set LORALOOP_TRAIN__FAST_PATH=false for this model"
        )
        raise TrainerError(msg)
    losses = F.cross_entropy(logits.float(), targets, reduction="none")
    per_token = torch.zeros(positions.shape, dtype=losses.dtype, device=losses.device)
    per_token = per_token.masked_scatter(positions, losses)
    tokens = positions.sum(dim=1).clamp(min=1)
    return (per_token.sum(dim=1) / tokens * batch.weights).sum()


def length_batches(
    samples: Sequence[EncodedSample], *, max_tokens: int
) -> list[list[EncodedSample]]:
    """Micro-batches of similar length, longest first, to cut padding.

    Each holds at most ``max_tokens`` padded tokens (rows x its longest sample); a
    longer sample gets one alone. Equal lengths keep their given order. Under
    :func:`total_influence` the step's loss and gradient do not depend on the cut.
    """
    batches: list[list[EncodedSample]] = []
    for sample in sorted(samples, key=lambda s: -len(s.input_ids)):
        if batches and (len(batches[-1]) + 1) * len(batches[-1][0].input_ids) <= max_tokens:
            batches[-1].append(sample)
        else:
            batches.append([sample])
    return batches
