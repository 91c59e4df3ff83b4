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
            "non-inferiority and solved); split over the problem types for solved and over "
            "all metrics for regression, so each family errs with probability <= alpha over "
            "the whole rollout, however often it is looked at."
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
    min_expected_events: float = Field(
        20.0,
        gt=0,
        description=(
            "Problem events the smaller arm must be expected to hold at the pooled rate "
            "(effective events: a labelled sample weighted 1/pi counts once) before any "
            "verdict; below it the verdict is insufficient_data. Sized by the smaller arm: "
            "a 1 % canary of 300 conversations at a 0.5 % rate expects 1.5 events, far too "
            "few to call anything however large the control."
        ),
    )
    count_target_events: float = Field(
        400.0,
        gt=0,
        description=(
            "Events (both arms) at which the exact count test (beta-binomial mixture) is "
            "tuned to be most powerful; it stays valid at any count."
        ),
    )
    min_label_coverage: float = Field(
        0.9,
        ge=0,
        le=1,
        description=(
            "Share of sampled conversations that must be labelled (or QA-reviewed) in both "
            "arms before a label- or QA-derived metric gets a verdict; below it the verdict "
            "is insufficient_labels (an unlabelled sample counts 0, which biases the newer, "
            "less-labelled canary toward a false solved)."
        ),
    )
    solved_min_new_data: float = Field(
        0.25,
        ge=0,
        description=(
            "The look that confirms solved must have at least this much more effective data "
            "(users) than the first look of the streak that met the criteria: two looks on "
            "almost the same data are one piece of evidence, not two."
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
            "Effective users (4ab/(a+b) for a and b users per arm: both arms at 50/50, about "
            "4x the canary at a small split) at which the confidence sequences are tightest; "
            "set it near the traffic expected when a decision is due. Bounds stay valid at "
            "any n."
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

    def solved_alpha(self, targets: int) -> float:
        """Level of each solved bound: alpha split over the problem types (Bonferroni)."""
        return self.alpha / max(1, targets)

    def margin_for(self, guardrail: str) -> float:
        """The non-inferiority margin of one guardrail."""
        return self.guardrail_margins.get(guardrail, self.guardrail_margin)
