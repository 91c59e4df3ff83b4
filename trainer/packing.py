"""Packing: several samples in one row, each attending only to itself.

On a GPU with FlashAttention 2, padding wastes most of a batch of short chat
samples; packing concatenates a micro-batch's samples into **one** row and restarts
``position_ids`` at every sample. transformers reads restarting ``position_ids`` as
sample boundaries only at batch size 1 (several rows would attend across samples),
so a micro-batch is always one row, and its cumulative sequence lengths are handed
to FlashAttention's variable-length kernel explicitly as well
(:func:`varlen_kwargs`). Elsewhere the same row runs with an explicit
block-diagonal causal mask (exact, but no faster), which is how the CPU tests
check that a packed step gives the same loss and gradients as a padded one.

Loss weights become per token: each token carries its sample's weight divided by
the sample's assistant-token count, so a sample's tokens sum to its weight times
its mean token loss: the same per-sample influence as the padded loss (see
:mod:`trainer.loss`), exact under gradient accumulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from trainer.encoding import IGNORE_INDEX, EncodedSample
from trainer.exceptions import TrainerError
from trainer.loss import trained_positions


@dataclass
class PackedRow:
    """Samples concatenated up to a length budget."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    token_weights: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def add(self, sample: EncodedSample) -> None:
        size = len(sample.input_ids)
        self.input_ids += sample.input_ids
        # The first label of a sample is never trained (its prompt), so no token is
        # ever predicted across a boundary.
        self.labels += [IGNORE_INDEX, *sample.labels[1:]]
        self.position_ids += list(range(size))
        self.token_weights += [sample.weight / max(sample.assistant_tokens, 1)] * size
        self.lengths.append(size)


def pack_samples(samples: Sequence[EncodedSample], *, max_len: int) -> list[PackedRow]:
    """Greedy packing in the given order; a sample longer than ``max_len`` gets a row alone."""
    rows: list[PackedRow] = []
    for sample in samples:
        if not rows or len(rows[-1].input_ids) + len(sample.input_ids) > max_len:
            rows.append(PackedRow())
        rows[-1].add(sample)
    return rows


@dataclass(frozen=True)
class PackedBatch:
    """Packed rows padded to the longest (right padding, no loss, no attention)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    token_weights: torch.Tensor
    lengths: tuple[tuple[int, ...], ...]

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(
            self.input_ids.to(device),
            self.labels.to(device),
            self.position_ids.to(device),
            self.token_weights.to(device),
            self.lengths,
        )


def pack_micro_batch(samples: Sequence[EncodedSample], *, pad_id: int) -> PackedBatch:
    """A micro-batch as one packed row: the only layout FlashAttention reads as packed."""
    row = PackedRow()
    for sample in samples:
        row.add(sample)
    return collate_packed([row], pad_id=pad_id)


def varlen_kwargs(batch: PackedBatch) -> dict[str, Any]:
    """FlashAttention's variable-length arguments for a one-row packed batch.

    ``cu_seq_lens_q/k`` are the cumulative sample lengths (int32, starting at 0) and
    ``max_length_q/k`` the longest sample, as transformers' flash path expects them.
    """
    if len(batch.lengths) != 1:
        msg = (
            f"a packed micro-batch must be one row, got {len(batch.lengths)}: build it with "
            "pack_micro_batch (several rows would attend across samples)"
        )
        raise TrainerError(msg)
    lengths = torch.tensor((0, *batch.lengths[0]), dtype=torch.int32)
    cumulative = lengths.cumsum(0, dtype=torch.int32).to(batch.input_ids.device)
    longest = max(batch.lengths[0])
    return {
        "cu_seq_lens_q": cumulative,
        "cu_seq_lens_k": cumulative,
        "max_length_q": longest,
        "max_length_k": longest,
    }


def collate_packed(rows: Sequence[PackedRow], *, pad_id: int) -> PackedBatch:
    width = max(len(r.input_ids) for r in rows)
    shape = (len(rows), width)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    weights = torch.zeros(shape, dtype=torch.float32)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        positions[i, :n] = torch.tensor(row.position_ids)
        weights[i, :n] = torch.tensor(row.token_weights)
    return PackedBatch(ids, labels, positions, weights, tuple(tuple(r.lengths) for r in rows))


def block_causal_mask(batch: PackedBatch, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1, L, L) additive mask: causal within each sample, nothing across or to padding."""
    rows, width = batch.input_ids.shape
    allowed = torch.zeros((rows, width, width), dtype=torch.bool)
    causal = torch.tril(torch.ones((width, width), dtype=torch.bool))
    for i, lengths in enumerate(batch.lengths):
        start = 0
        for length in lengths:
            end = start + length
            allowed[i, start:end, start:end] = causal[:length, :length]
            start = end
        allowed[i, start:, start:] = causal[: width - start, : width - start]  # padding: itself
    mask = torch.zeros((rows, 1, width, width), dtype=dtype)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def packed_loss_sum(logits: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """Σ_t w(t) CE(t) over the packed rows: Σ_s w_s · mean_t CE(s, t), as the padded loss."""
    shifted = batch.labels[:, 1:]
    per_token = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return (per_token * batch.token_weights[:, 1:]).sum()


def packed_selected_loss_sum(logits: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """:func:`packed_loss_sum` from the logits of the trained positions only ((n, vocab))."""
    positions = trained_positions(batch.labels)[:, :-1]
    targets = batch.labels[:, 1:][positions]
    losses = F.cross_entropy(logits.float(), targets, reduction="none")
    return (losses * batch.token_weights[:, 1:][positions]).sum()
