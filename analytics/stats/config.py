"""Settings for comparing two model versions: levels, margins and health thresholds.

One class, ``ComparisonSettings``, read from ``LORALOOP_COMPARE__*`` variables, e.g.
``LORALOOP_COMPARE__DELTA=0.25`` or
``LORALOOP_COMPARE__GUARDRAIL_MARGINS='{"abnormal_handoff_rate": 0.2}'``.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ComparisonSettings(BaseSettings):
    """How strict the verdicts on a canary against its previous version are."""

    model_config = SettingsConfigDict(env_prefix="LORALOOP_COMPARE__", extra="ignore")

    alpha: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description=(
            "Error level of every always-valid bound (one-sided for regression, "
            "non-inferiority and solved) and the e-BH false discovery rate across problem types."
        ),
    )
    familywise_regression: bool = Field(
        True,
        description=(
            "Split alpha evenly over all problem types and guardrails (Bonferroni) for the "
            "regression bounds, so an A/A canary is rolled back with probability <= alpha "
            "however often it is looked at; False tests each metric at alpha."
        ),
    )
    delta: float = Field(
        0.2,
        gt=0,
        lt=1,
        description=(
            "A problem type is a solved candidate only if the rate is shown to have fallen by "
            "more than this relative amount (new/prev - 1 < -delta)."
        ),
    )
    min_events_per_arm: int = Field(
        150,
        ge=1,
        description=(
            "Conversations served per arm before a type can be called solved, non-inferior "
            "or inconclusive; below it the verdict is insufficient_data."
        ),
    )
    min_events_for_regression: int = Field(
        50,
        ge=1,
        description=(
            "Conversations served per arm before a regression can be declared. Lower than "
            "min_events_per_arm because rolling back is the safe direction; below it the "
            "asymptotic bound is not trusted."
        ),
    )
    target_margin: float = Field(
        0.1,
        ge=0,
        description=(
            "Relative non-inferiority margin for problem types: non_inferior when "
            "new/prev - 1 is shown below it."
        ),
    )
    guardrail_margin: float = Field(
        0.1,
        ge=0,
        description="Relative non-inferiority margin of any guardrail not in guardrail_margins.",
    )
    guardrail_margins: dict[str, float] = Field(
        default_factory=lambda: {"abnormal_handoff_rate": 0.2},
        description=(
            "Relative non-inferiority margin per guardrail name (JSON object in the "
            "environment); handoffs are noisier, hence 20 %."
        ),
    )
    srm_p_threshold: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Sample-ratio-mismatch chi-square p-value below which the experiment holds.",
    )
    max_multiple_exposure_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of users exposed to both versions above which the experiment holds.",
    )
    cs_target_n: int = Field(
        10_000,
        ge=1,
        description=(
            "Users (both arms together) at which the confidence sequences are tightest; set "
            "it near the traffic expected when a decision is due. Bounds stay valid at any n."
        ),
    )

    @field_validator("guardrail_margins")
    @classmethod
    def _margins_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: m for name, m in value.items() if m < 0}
        if bad:
            msg = f"guardrail margins must be >= 0, got {bad}"
            raise ValueError(msg)
        return value

    def regression_alpha(self, metrics: int) -> float:
        """Level of each regression bound when ``metrics`` metrics are compared."""
        return self.alpha / max(1, metrics) if self.familywise_regression else self.alpha

    def margin_for(self, guardrail: str) -> float:
        """The non-inferiority margin of one guardrail."""
        return self.guardrail_margins.get(guardrail, self.guardrail_margin)
