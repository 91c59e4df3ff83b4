"""The fast path (head at trained positions only, length-cut micro-batches, bf16 where
native) computes the reference path's loss: exactly per step in fp32, and a loss curve
within a stated tolerance under bf16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.config import TrainConfig
from trainer.encoding import IGNORE_INDEX, EncodedSample, encode_row
from trainer.lora import attach_adapter, regroup_by_length, step_backward, train_adapter
from trainer.loss import collate, head_at_trained, length_batches
from trainer.precision import cpu_native_bf16, train_bf16

from .test_loss import _grads, _live_peft_model, samples

__all__ = ["samples"]  # the fixture, shared with test_loss

#: fp32 losses agree to the last few bits (only the reduction order of the head's
#: matmul and the softmax may differ between the full and the selected layout).
FP32_RTOL = 1e-6
#: bf16 autocast rounds the base's matmul inputs to 8 mantissa bits; on the tiny model
#: the loss curve stays within 2 % of the fp32 curve at every step.
BF16_CURVE_RTOL = 2e-2


def _grads_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-7)


def test_selected_positions_loss_equals_the_full_logits_loss_in_fp32(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _live_peft_model(tiny_checkpoint)
    pad = tiny_tokenizer.pad_token_id
    micro = [samples[:2], samples[2:]]
    full_loss, full_tokens = step_backward(model, micro, pad_id=pad, bf16=False)
    full = _grads(model)
    model.zero_grad()
    selected_loss, tokens = step_backward(
        model, micro, pad_id=pad, bf16=False, head_only_trained=True
    )
    assert selected_loss == pytest.approx(full_loss, rel=FP32_RTOL)
    assert tokens == full_tokens
    _grads_close(full, _grads(model))


def test_the_head_sees_only_trained_positions_and_is_restored(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _live_peft_model(tiny_checkpoint)
    batch = collate(samples, pad_id=tiny_tokenizer.pad_token_id)
    trained = sum(s.assistant_tokens for s in samples)
    with torch.no_grad():
        with head_at_trained(model, batch.labels) as positions:
            selected = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    assert selected.logits.shape == (trained, full.logits.shape[-1])
    assert int(positions.sum()) == trained < batch.attention_mask.sum()
    torch.testing.assert_close(selected.logits, full.logits[positions], rtol=1e-5, atol=1e-6)


def _sample(index: int, length: int) -> EncodedSample:
    ids = [3 + (index + t) % 40 for t in range(length)]
    return EncodedSample(f"s{index}", ids, [IGNORE_INDEX, *ids[1:]], 1.0)


def test_length_batches_keep_every_sample_within_the_token_budget() -> None:
    lengths = [9, 30, 10, 31, 8, 29, 11, 70]
    samples = [_sample(i, n) for i, n in enumerate(lengths)]
    batches = length_batches(samples, max_tokens=64)
    assert sorted(s.sample_id for b in batches for s in b) == sorted(s.sample_id for s in samples)
    assert [[len(s.input_ids) for s in b] for b in batches] == [
        [70],
        [31, 30],
        [29, 11],
        [10, 9, 8],
    ]
    padded = sum(len(b) * len(b[0].input_ids) for b in batches)
    shuffled = sum(4 * max(lengths[i : i + 4]) for i in (0, 4))
    assert padded < shuffled


def test_regrouped_step_gives_the_same_gradient(
    tiny_checkpoint: Path, tiny_tokenizer: Any, samples: list[EncodedSample]
) -> None:
    model = _live_peft_model(tiny_checkpoint)
    pad = tiny_tokenizer.pad_token_id
    micro = [samples[:1], samples[1:2], samples[2:3], samples[3:]]
    loss, _ = step_backward(model, micro, pad_id=pad, bf16=False)
    reference = _grads(model)
    model.zero_grad()
    regrouped = regroup_by_length(micro, TrainConfig(batch_size=1, max_seq_len=128))
    assert len(regrouped) < len(micro)
    fast_loss, _ = step_backward(model, regrouped, pad_id=pad, bf16=False, head_only_trained=True)
    assert fast_loss == pytest.approx(loss, rel=1e-5)
    _grads_close(reference, _grads(model))


def _curve(checkpoint: Path, rows: list[EncodedSample], **overrides: Any) -> list[float]:
    from transformers import AutoModelForCausalLM

    config = TrainConfig(
        lora_dropout=0.0,
        learning_rate=3e-2,
        warmup_ratio=0.0,
        epochs=3,
        batch_size=2,
        grad_accum=2,
        max_seq_len=128,
        progress=False,
        device="cpu",
        seed=3,
        **overrides,
    )
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(checkpoint), config)
    return train_adapter(model, rows, config=config, pad_id=0).losses


@pytest.fixture
def rows(tiny_tokenizer: Any) -> list[EncodedSample]:
    prompts = ["Hi", "Price?", "Refund?", "Thanks", "Certificate?", "Schedule?", "Jobs?", "Ok"]
    replies = ["Hello.", "9 dollars a month.", "Within 14 days.", "You are welcome!"]
    return [
        encode_row(
            tiny_tokenizer,
            {
                "sample_id": str(i),
                "weight": 1.0 - 0.1 * (i % 3),
                "messages": [
                    {"role": "user", "content": prompt * (1 + i % 3)},
                    {"role": "assistant", "content": replies[i % len(replies)]},
                ],
            },
            max_seq_len=128,
        )
        for i, prompt in enumerate(prompts)
    ]


def test_fast_path_loss_curve_equals_the_reference_in_fp32(
    tiny_checkpoint: Path, rows: list[EncodedSample]
) -> None:
    reference = _curve(tiny_checkpoint, rows, fast_path=False)
    fast = _curve(tiny_checkpoint, rows, fast_path=True, precision="fp32")
    assert len(fast) == len(reference) == 6
    assert fast == pytest.approx(reference, rel=1e-4)
    assert reference[-1] < reference[0]  # it learns, so the comparison means something


def test_fast_path_loss_curve_in_bf16_stays_within_tolerance(
    tiny_checkpoint: Path, rows: list[EncodedSample]
) -> None:
    reference = _curve(tiny_checkpoint, rows, fast_path=False)
    fast = _curve(tiny_checkpoint, rows, fast_path=True, precision="bf16")
    assert fast == pytest.approx(reference, rel=BF16_CURVE_RTOL)
    assert fast != reference  # bf16 really ran


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\n", encoding="utf-8")
    return path


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert cpu_native_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert cpu_native_bf16(_cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not cpu_native_bf16(_cpuinfo(tmp_path, "avx512f"))


def test_bf16_under_auto_only_on_the_fast_path_of_a_native_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr("trainer.precision.cpu_native_bf16", lambda: True)
    assert train_bf16(TrainConfig(), cpu)
    assert not train_bf16(TrainConfig(fast_path=False), cpu)
    assert not train_bf16(TrainConfig(precision="fp32"), cpu)
    monkeypatch.setattr("trainer.precision.cpu_native_bf16", lambda: False)
    assert not train_bf16(TrainConfig(), cpu)
    assert train_bf16(TrainConfig(precision="bf16", fast_path=False), cpu)


def test_the_reference_path_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORALOOP_TRAIN__FAST_PATH", "false")
    assert TrainConfig().fast_path is False
    assert TrainConfig(batch_size=3, max_seq_len=100).micro_batch_tokens_value == 300


def test_gradient_checkpointing_gives_the_same_loss_curve(
    tiny_checkpoint: Path, rows: list[EncodedSample]
) -> None:
    reference = _curve(tiny_checkpoint, rows, precision="fp32")
    checkpointed = _curve(tiny_checkpoint, rows, precision="fp32", gradient_checkpointing=True)
    assert checkpointed == pytest.approx(reference, rel=1e-5)
    assert reference[-1] < reference[0]


def test_gradient_checkpointing_is_switched_on_in_the_base(tiny_checkpoint: Path) -> None:
    from transformers import AutoModelForCausalLM

    config = TrainConfig(gradient_checkpointing=True, device="cpu", progress=False)
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(tiny_checkpoint), config)
    assert model.base_model.model.is_gradient_checkpointing
    plain = attach_adapter(
        AutoModelForCausalLM.from_pretrained(tiny_checkpoint), TrainConfig(device="cpu")
    )
    assert not plain.base_model.model.is_gradient_checkpointing
