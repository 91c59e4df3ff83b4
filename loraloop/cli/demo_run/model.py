"""The served and trained model of the demo: SmolLM2-135M-Instruct, or a tiny one with --fast."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraloop.simulation import SimulationSettings
from loraloop.simulation.scenario import REPEAT_SUFFIX, SIGNUP_URL, scenario_items

if TYPE_CHECKING:
    from gateway.backends import LocalBackend
    from loraloop.cli.demo_run.context import DemoContext
    from trainer.config import TrainConfig
    from trainer.service import CycleConfigs

TINY_DIR = "cache/tiny-demo-model"
MAX_PHRASINGS = 99
"""More than any family has: the tiny model's vocabulary covers every phrasing."""

FAST_GATE: dict[str, Any] = {
    "min_pass_rate_gain": 0.0, "behaviour_alpha": 1.0, "min_unseen_prompts": 1,
    "max_baseline_drop": 1.0, "behaviour_max_new_tokens": 16,
}  # fmt: skip
"""--fast checks the plumbing: a tiny random model cannot generalise to unseen phrasings,
so its gate measures and records the paired numbers but has no bar (documented)."""

FAST_TRAIN: dict[str, Any] = {
    "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 3e-2,
    "warmup_ratio": 0.0, "epochs": 4, "batch_size": 4, "grad_accum": 2, "max_seq_len": 128,
}  # fmt: skip
"""Hyperparameters that make the tiny random model learn within a few steps."""


def _corpus() -> list[str]:
    lines = []
    for item in scenario_items(MAX_PHRASINGS):
        lines += [item.text, item.reference, item.text + REPEAT_SUFFIX[item.lang]]
    return [*lines, SIGNUP_URL] * 3


def train_config(data_dir: Path, sim: SimulationSettings, *, fast: bool) -> TrainConfig:
    """LoRA settings: the tiny model's with --fast, else the real model's (environment first)."""
    from trainer.config import TrainConfig
    from trainer.tiny_model import build_tiny_checkpoint

    if fast:
        tiny = data_dir / TINY_DIR
        if not (tiny / "config.json").is_file():
            build_tiny_checkpoint(tiny, _corpus())
        return TrainConfig(base_model=str(tiny), progress=False, **FAST_TRAIN)
    return TrainConfig(
        epochs=sim.train_epochs,
        learning_rate=sim.train_learning_rate,
        batch_size=sim.train_batch_size,
        grad_accum=sim.train_grad_accum,
        warmup_ratio=sim.train_warmup_ratio,
        max_seq_len=sim.train_max_seq_len,
        progress=False,
    )


def cycle_configs(ctx: DemoContext) -> CycleConfigs:
    """The dataset mix (environment, with the scenario's evaluation set), LoRA settings and
    gate of a demo cycle."""
    from trainer.config import DatasetConfig, GateConfig
    from trainer.service import CycleConfigs

    train = train_config(ctx.settings.data_dir, ctx.sim, fast=ctx.fast)
    gate = GateConfig(**FAST_GATE) if ctx.fast else GateConfig()
    dataset = DatasetConfig(evaluation_set=ctx.evaluation_set)
    return CycleConfigs(dataset=dataset, train=train, gate=gate)


def load_backend(
    data_dir: Path, sim: SimulationSettings, *, fast: bool, registry_root: Path
) -> tuple[LocalBackend, str]:
    """The gateway's local backend over the base model (converted once, cached), and the
    model's name."""
    from gateway.backends import LocalBackend
    from trainer.base_model import load_base, resolve_base_model

    cfg = train_config(data_dir, sim, fast=fast)
    cache = cfg.base_model_cache or data_dir / "cache" / "base-model"
    ref = resolve_base_model(base_model=cfg.base_model, cache_dir=cache)
    model, tokenizer = load_base(ref)
    model.eval()
    name = f"tiny random model {ref.name} (--fast)" if fast else ref.name
    return LocalBackend(
        model,
        tokenizer,
        registry_root=registry_root,
        max_new_tokens=sim.fast_max_new_tokens if fast else sim.max_new_tokens,
        adapter_cache_size=sim.adapter_cache_size,
        batch_size=sim.generation_batch_size,
        reply_cache_size=sim.reply_cache_size,
    ), name
