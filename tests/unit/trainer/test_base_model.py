"""Resolving and loading the base model (the real SmolLM2 only in a slow test)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from trainer.base_model import (
    GGUF_MODEL_NAME,
    load_base,
    resolve_base_model,
    sha256_file,
    smollm2_gguf,
)
from trainer.config import TrainConfig
from trainer.exceptions import BaseModelError


def test_local_checkpoint_identity_hashes_its_weights(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    ref = resolve_base_model(base_model=str(tiny_checkpoint), cache_dir=tmp_path)
    assert ref.path == tiny_checkpoint
    assert ref.sha256 == sha256_file(tiny_checkpoint / "model.safetensors")
    model, tokenizer = load_base(ref)
    assert not any(p.requires_grad for p in model.parameters())
    assert tokenizer.pad_token_id is not None


def test_missing_checkpoint_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="LORALOOP_TRAIN__BASE_MODEL"):
        resolve_base_model(base_model=str(tmp_path / "nothing"), cache_dir=tmp_path)


def test_base_model_setting_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LORALOOP_TRAIN__BASE_MODEL", str(tmp_path))
    monkeypatch.setenv("LORALOOP_TRAIN__LORA_R", "8")
    config = TrainConfig()
    assert (config.base_model, config.lora_r, config.lora_alpha) == (str(tmp_path), 8, 32)


def test_gguf_is_found_without_importing_the_package() -> None:
    assert smollm2_gguf().name.endswith(".gguf")


@pytest.mark.slow
def test_smollm2_converts_once_and_reloads(tmp_path: Path) -> None:
    started = time.perf_counter()
    ref = resolve_base_model(base_model="", cache_dir=tmp_path / "base")
    converted = time.perf_counter() - started
    again = resolve_base_model(base_model="", cache_dir=tmp_path / "base")
    assert again == ref
    assert ref.name == GGUF_MODEL_NAME
    started = time.perf_counter()
    model, tokenizer = load_base(ref)
    loaded = time.perf_counter() - started
    assert model.config.num_hidden_layers == 30
    assert loaded < converted
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == model.config.eos_token_id
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
