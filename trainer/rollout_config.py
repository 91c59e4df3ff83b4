"""Canary rollout settings: the sticky split, the steps and when a step may advance.

One class, ``RolloutSettings``, read from ``LORALOOP_ROLLOUT__*`` variables, e.g.
``LORALOOP_ROLLOUT__STEPS='[1, 10, 100]'`` or ``LORALOOP_ROLLOUT__ALLOWLIST='["qa-1"]'``
(design: Training cycle, steps 6–7).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analytics.proposals import (
    DEFAULT_FAMILY_MAX_PROBLEM_RATE,
    DEFAULT_FAMILY_MIN_CONVERSATIONS,
    FamilyRule,
)

FULL_ROLLOUT_PERCENT = 100.0
"""The last step of every rollout: the canary serves everyone and becomes the version."""


class RolloutSettings(BaseSettings):
    """How users are split between a canary and its previous version, and how it advances."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_ROLLOUT__", env_nested_delimiter="__", extra="ignore"
    )

    salt: SecretStr = Field(
        SecretStr("loraloop-canary"),
        description=(
            "Mixed into the user hash. Keep it fixed for the life of a deployment: a new salt "
            "re-draws every user's bucket, so users change arms (multiple exposure)."
        ),
    )
    steps: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, FULL_ROLLOUT_PERCENT],
        description=(
            "Canary share of users in percent, step by step; strictly increasing, ending at "
            "100 (reaching 100 completes the rollout)."
        ),
    )
    min_conversations_per_step: int = Field(
        150,
        ge=1,
        description=(
            "Conversations served per arm during the current step (counted in the comparison's "
            "denominators) before the rollout may advance to the next step."
        ),
    )
    require_guardrails_non_inferior: bool = Field(
        True,
        description=(
            "Advance only when every guardrail is shown non-inferior; False advances on any "
            "healthy look without a regression and with enough data."
        ),
    )
    complete_requires_solved_target: bool = Field(
        True,
        description=(
            "The last step (100 %) needs at least one target problem type called "
            "solved_candidate; otherwise the rollout stays at its last canary step, so a "
            "version whose every verdict is inconclusive never replaces the stable one."
        ),
    )
    allowlist: list[str] = Field(
        default_factory=list,
        description="User ids always routed to the canary (testers, QA), whatever the share.",
    )
    record_batch_size: int = Field(
        500, ge=1, description="Assignments buffered before they are written to the warehouse."
    )
    recorder_cache_size: int = Field(
        1_000_000,
        ge=1,
        description=(
            "(version, user) pairs remembered as already recorded, so a returning user is "
            "written once; older entries are forgotten first."
        ),
    )
    actor: str = Field("rollout", description="Actor name on rollout rows and proposals.")
    family_min_conversations: int = Field(
        DEFAULT_FAMILY_MIN_CONVERSATIONS,
        ge=1,
        description=(
            "Canary conversations (served by the new version since its rollout started) a "
            "sample's prompt family must have opened before the sample may be proposed for "
            "promotion; fewer holds it back until a later look."
        ),
    )
    family_max_problem_rate: float = Field(
        DEFAULT_FAMILY_MAX_PROBLEM_RATE,
        ge=0.0,
        le=1.0,
        description=(
            "Largest share of those family conversations with a labelled sample of one of the "
            "sample's problem types for the family to count as fixed (the sample is proposed)."
        ),
    )

    def family_rule(self) -> FamilyRule:
        """When a sample's family counts as fixed on the canary's traffic."""
        return FamilyRule(self.family_min_conversations, self.family_max_problem_rate)

    @field_validator("steps")
    @classmethod
    def _steps_valid(cls, value: list[float]) -> list[float]:
        if not value or any(b <= a for a, b in zip(value, value[1:], strict=False)):
            msg = f"steps must be strictly increasing, got {value}"
            raise ValueError(msg)
        if value[0] <= 0 or value[-1] != FULL_ROLLOUT_PERCENT:
            msg = f"steps must lie in (0, 100] and end at 100, got {value}"
            raise ValueError(msg)
        return value
