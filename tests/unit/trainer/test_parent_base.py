"""A parent adapter trained on another base is refused; the frozen base can be cast to
bf16 (CUDA) while the adapter stays fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.base_model import BaseModelRef, check_parent_base
from trainer.config import TrainConfig
from trainer.exceptions import BaseModelError
from trainer.lora import attach_adapter, freeze_in_dtype

REF = BaseModelRef(Path("/models/b"), "base-b", "/models/b", "b" * 64)


def test_a_parent_on_the_same_base_is_accepted() -> None:
    check_parent_base("model_v1", {"name": "base-b", "sha256": "b" * 64}, REF)
    check_parent_base("model_v1", {}, REF)  # an old version without a recorded sha


def test_a_parent_on_another_base_is_refused_naming_both_and_the_fix() -> None:
    recorded = {"name": "base-a", "source": "/models/a", "sha256": "a" * 64}
    with pytest.raises(BaseModelError) as caught:
        check_parent_base("model_v3", recorded, REF)
    message = str(caught.value)
    for part in ("model_v3", "base-a", "a" * 12, "base-b", "b" * 12, "LORALOOP_TRAIN__BASE_MODEL"):
        assert part in message


def test_frozen_weights_cast_to_bf16_and_the_adapter_stays_fp32(tiny_checkpoint: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = attach_adapter(AutoModelForCausalLM.from_pretrained(tiny_checkpoint), TrainConfig())
    freeze_in_dtype(model, torch.bfloat16)
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
