"""Shared trainer test helpers: a synthetic pool and a tiny random causal LM, built offline.

The pool has baseline price answers (a few paraphrases per plan) and two kinds of
corrected problems, each about its own topic (one prompt family per problem). The tiny
model (a 2-layer Llama with a byte-level BPE tokenizer and a ChatML template) is
saved with ``save_pretrained`` and reloaded with ``from_pretrained``, so the
trainer exercises the real loading path without any download; ``FAMILIES`` names
the same tiny model in the real families' shapes (a Qwen2 with Qwen2's template, a
Llama with Llama 3's), built by :func:`family_checkpoint`. A test module or
conftest pulls the fixtures in by importing them (``from tests.trainer_fixtures
import tiny_checkpoint``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from trainer.config import GateConfig, TrainConfig
from trainer.records import ChatMessage, PoolSample, Tier
from trainer.tiny_model import TinyModelConfig, build_tiny_checkpoint

#: Position limit of every fixture model (the tests' max_seq_len is 128).
MAX_POSITIONS = 256

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PLANS = ["basic", "plus", "pro", "team", "family", "student", "annual", "starter"]
PROBLEM_TYPES = ["wrong_CTA_timing", "over_promise"]
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


def baseline_sample(index: int, tier: Tier) -> PoolSample:
    """A baseline sample: a price question and its factual answer."""
    plan = PLANS[index % len(PLANS)]
    return PoolSample(
        sample_id=f"b{index:03d}",
        status=tier,
        problem_types=[],
        messages=[ChatMessage(role="user", content=f"How much is the {plan} plan {index}?")],
        corrected_response=f"The {plan} plan costs {index + 5} dollars a month.",
        updated_at=WHEN,
    )


#: What the fixture's problem prompts ask about: one prompt family each.
TOPICS = [
    "the refund policy", "weekend classes", "the completion certificate", "job placement",
    "mentor sessions", "installment payments", "the final project", "group discounts",
    "live lectures", "the study schedule", "course materials", "the trial week",
    "office hours", "the alumni network", "exam retakes", "team licences",
    "offline downloads", "the beginner track", "career coaching", "the mobile app",
]  # fmt: skip


def problem_sample(index: int, problem_type: str) -> PoolSample:
    """A problem sample: a question about one topic (its own prompt family), and the
    corrected reply of its type (a sentence the type shares, ending with the topic)."""
    topic = TOPICS[index % len(TOPICS)]
    reply = {
        "wrong_CTA_timing": f"Let me answer your question first, then we can talk about {topic}.",
        "over_promise": f"I cannot promise that, but I can explain {topic}.",
    }[problem_type]
    return PoolSample(
        sample_id=f"p{index:03d}",
        status=Tier.PROBLEM,
        problem_types=[problem_type],
        messages=[
            ChatMessage(role="user", content=f"Tell me about {topic}."),
            ChatMessage(role="assistant", content="Buy now! It fixes everything, guaranteed!"),
        ],
        corrected_response=reply,
        first_seen_version="model_v1",
        updated_at=WHEN,
    )


def make_pool(baselines: int = 24, problems: int = 12) -> list[PoolSample]:
    """A pool with every baseline tier and two problem types."""
    tiers = [Tier.CORE_BASELINE, Tier.SECONDARY_BASELINE, Tier.CANDIDATE_BASELINE]
    pool = [baseline_sample(i, tiers[i % 3]) for i in range(baselines)]
    pool += [problem_sample(i, PROBLEM_TYPES[i % 2]) for i in range(problems)]
    return pool


def _corpus() -> list[str]:
    lines = []
    for sample in make_pool(40, 20):
        for message in sample.training_messages():
            lines.append(f"<|im_start|>{message.role}\n{message.content}<|im_end|>\n")
    return lines * 3


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama + byte-level BPE tokenizer with a ChatML template."""
    path = tmp_path_factory.mktemp("tiny-model")
    return build_tiny_checkpoint(path, _corpus(), TinyModelConfig(max_positions=MAX_POSITIONS))


#: Real families in tiny form: the architecture, its chat template and its quirks
#: (Qwen2: tied embeddings, grouped-query attention, biased q/k/v, a default system turn;
#: Llama 3: a bos once, header-delimited turns ending in ``<|eot_id|>``).
FAMILIES: dict[str, TinyModelConfig] = {
    "qwen2": TinyModelConfig(
        max_positions=MAX_POSITIONS,
        architecture="qwen2",
        chat_format="qwen2",
        kv_heads=1,
        tie_embeddings=True,
    ),
    "llama3": TinyModelConfig(
        max_positions=MAX_POSITIONS, architecture="llama", chat_format="llama3"
    ),
}


def family_checkpoint(path: Path, family: str, **overrides: Any) -> Path:
    """Build the tiny model of ``FAMILIES[family]`` (with ``overrides``) under ``path``."""
    return build_tiny_checkpoint(path, _corpus(), replace(FAMILIES[family], **overrides))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_checkpoint: Path) -> object:
    """The tiny tokenizer, reloaded with ``AutoTokenizer.from_pretrained``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


#: Hyperparameters that make the tiny random model learn within a few steps.
TINY_TRAIN: dict[str, Any] = {
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "learning_rate": 3e-2,
    "warmup_ratio": 0.0,
    "epochs": 4,
    "batch_size": 4,
    "grad_accum": 2,
    "max_seq_len": 128,
    "progress": False,
}

#: A gate that decodes little, for speed.
TINY_GATE = GateConfig(behaviour_max_new_tokens=8)


def tiny_train_config(checkpoint: Path, **overrides: Any) -> TrainConfig:
    """The tiny hyperparameters on ``checkpoint``, with ``overrides``."""
    return TrainConfig(**({"base_model": str(checkpoint)} | TINY_TRAIN | overrides))
