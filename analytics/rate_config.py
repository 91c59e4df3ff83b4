"""Which rates a version comparison reads from the warehouse, and how.

One class, ``RateQuerySettings``, read from ``LORALOOP_RATES__*`` variables, e.g.
``LORALOOP_RATES__TARGET_SOURCE=qa`` or
``LORALOOP_RATES__PROBLEM_TYPES='["missing_knowledge", "over_promise"]'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loraloop.lifecycle import DEFAULT_TAXONOMY


class RateQuerySettings(BaseSettings):
    """The metrics of a comparison: problem types (targets) and guardrails."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_RATES__", env_nested_delimiter="__", extra="ignore"
    )

    problem_types: list[str] = Field(
        default_factory=lambda: sorted(DEFAULT_TAXONOMY),
        description="Problem types compared per version (the targets); the taxonomy.",
    )
    cluster_by: Literal["user", "opening_prompt"] = Field(
        "user",
        description=(
            "The unit whose conversations count as correlated in the variance: user "
            "(production: one user's conversations are alike), or opening_prompt (each "
            "distinct first user message, case and surrounding space aside, is one cluster: "
            "for a simulator that re-asks fixed prompts of a deterministic model, whose "
            "repeated conversations are copies, not new observations)."
        ),
    )
    target_source: Literal["labels", "qa"] = Field(
        "labels",
        description=(
            "labels: a design-sampled conversation counts 1/pi for a type when its label "
            "carries the type; qa: when its QA verdict lists it (conversations."
            "qa_problem_types). Both are Horvitz-Thompson estimates over the sampling "
            "design, unbiased for the true rate; their verdicts wait for the labelling "
            "coverage (LORALOOP_COMPARE__MIN_LABEL_COVERAGE)."
        ),
    )
    detector_guardrails: list[str] = Field(
        default_factory=list,
        description=(
            "Detectors whose firing rate (conversations.detectors, every conversation) is a "
            "higher-is-worse guardrail named detector:<name>; empty keeps the family small."
        ),
    )
    risk_acceptances: list[str] = Field(
        default_factory=lambda: ["Risk", "Reject"],
        description="QA acceptances counted by the risk_reject_rate guardrail.",
    )
    exposure_grace_s: float = Field(
        300.0,
        ge=0,
        description=(
            "A conversation counts if it began at most this long before the user's first "
            "recorded exposure: the router is asked after the user's first turn arrived."
        ),
    )
