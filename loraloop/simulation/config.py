"""Settings of the closed-loop demo: judge rules, traffic sizes, loop parameters.

``LORALOOP_DEMO__*`` variables (nested with ``__``), e.g.
``LORALOOP_DEMO__CONVERSATIONS_PER_BATCH=300`` or
``LORALOOP_DEMO__RULES__PROMISE_PATTERNS='["\\\\bguarantee"]'`` (JSON of regexes).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loraloop.simulation.rules import JudgeRules
from loraloop.simulation.scenario import PHRASINGS_PER_FAMILY

__all__ = ["JudgeRules", "SimulationSettings"]


class SimulationSettings(BaseSettings):
    """The demo's scenario, traffic and loop (``LORALOOP_DEMO__*``)."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_DEMO__", env_nested_delimiter="__", extra="ignore"
    )

    rules: JudgeRules = Field(default_factory=JudgeRules)
    seed: int = Field(7, description="Seeds users, tiers, prompts and reactions.")
    phrasings_per_family: int = Field(
        PHRASINGS_PER_FAMILY,
        ge=1,
        le=PHRASINGS_PER_FAMILY,
        description="Phrasings per prompt family (two families per intent and language: "
        "family a may be trained, family b is the evaluation family).",
    )
    fast_phrasings_per_family: int = Field(
        1, ge=1, le=PHRASINGS_PER_FAMILY, description="The same with --fast."
    )
    users: int = Field(400, ge=1, description="Simulated users (each holds several chats).")
    fast_users: int = Field(120, ge=1, description="Simulated users with --fast.")
    conversations_per_batch: int = Field(
        240, ge=1, description="Conversations published per traffic batch."
    )
    fast_conversations_per_batch: int = Field(80, ge=1, description="The same with --fast.")
    cycles: int = Field(3, ge=1, description="Training cycles the demo runs.")
    max_looks: int = Field(4, ge=1, description="Canary looks per rollout at most.")
    tier_shares: dict[str, float] = Field(
        default_factory=lambda: {"standard": 0.5, "high_value": 0.35, "vip": 0.15},
        description="Share of users per tier.",
    )
    thumbs_up_probability: float = Field(
        0.3, ge=0, le=1, description="A satisfied user gives a thumbs-up this often."
    )
    conversion_probability: float = Field(
        0.5, ge=0, le=1, description="A click on a well-timed sign-up link converts this often."
    )
    course_price: float = Field(199.0, gt=0, description="Value of a conversion.")
    rollout_steps: list[float] = Field(
        default_factory=lambda: [25.0, 50.0, 75.0, 100.0],
        description="Canary steps (percent). Solved needs two consecutive looks with at "
        "least min_events_per_arm conversations per arm: with 240 conversations a batch the "
        "25 % look is too small, the 50 % and 75 % looks can both count.",
    )
    min_conversations_per_step: int = Field(
        40, ge=1, description="Conversations per arm before a step may advance."
    )
    fast_min_conversations_per_step: int = Field(10, ge=1, description="The same with --fast.")
    min_events_per_arm: int = Field(
        80, ge=1, description="Conversations per arm before a type may be called solved."
    )
    fast_min_events_per_arm: int = Field(15, ge=1, description="The same with --fast.")
    max_new_tokens: int = Field(
        64,
        ge=1,
        description="Tokens generated per reply (the longest Chinese reference answer is "
        "about 80 tokens; its facts come within the first 60).",
    )
    fast_max_new_tokens: int = Field(16, ge=1, description="The same with --fast.")
    generation_batch_size: int = Field(
        16, ge=1, description="Replies the gateway's local backend generates together at most."
    )
    gateway_concurrency: int = Field(
        64, ge=1, description="Chat requests the simulated users keep in flight at the gateway."
    )
    gateway_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Seconds one chat request may take (it waits behind the replies queued "
        "before it).",
    )
    reply_cache_size: int = Field(
        100_000,
        ge=1,
        description="Greedy replies the gateway keeps: the users re-ask a finite prompt set, "
        "so each (version, conversation) is generated once.",
    )
    adapter_cache_size: int = Field(
        4, ge=2, description="Adapters the gateway keeps loaded (a canary serves two)."
    )
    stream_timeout_s: float = Field(
        120.0, gt=0, description="How long to wait for the stack to write a batch."
    )
    poll_interval_s: float = Field(0.5, gt=0, description="Warehouse polling interval.")
    train_epochs: int = Field(
        6,
        ge=1,
        description="LoRA epochs per cycle (real model). The deduplicated dataset is small "
        "(a few dozen prompt → reference pairs): it takes a few dozen optimizer steps to learn.",
    )
    train_learning_rate: float = Field(2e-3, gt=0, description="LoRA learning rate (real model).")
    train_batch_size: int = Field(4, ge=1, description="Samples per LoRA step (real model).")
    train_grad_accum: int = Field(
        1, ge=1, description="Micro-batches per optimizer step (real model): 1 gives more steps."
    )
    train_warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="Warm-up share of the LoRA steps (real model)."
    )
    train_max_seq_len: int = Field(256, ge=8, description="Longest training sequence (tokens).")
    approver_role_reason: str = Field(
        "demo approver: the fix matches the course policy and is safe to keep",
        description="Reason recorded with each approval.",
    )
