"""The pool-sample record the dataset builder consumes, as the warehouse will hand it over.

``messages`` is the conversation context before the problematic assistant turn;
``corrected_response`` is the training target that replaces that turn. If the
context still ends with the original (bad) assistant reply, the builder drops it.
``times_trained`` counts the gate-passed versions that already trained on the
sample's current label (see :mod:`trainer.pool`).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Tier(StrEnum):
    """Where a sample stands in the baseline ladder (``problem`` = current cycle)."""

    CORE_BASELINE = "core_baseline"
    SECONDARY_BASELINE = "secondary_baseline"
    CANDIDATE_BASELINE = "candidate_baseline"
    PROBLEM = "problem"


#: Higher first: the tier kept when two samples carry the same content.
TIER_PRIORITY: tuple[Tier, ...] = (
    Tier.CORE_BASELINE,
    Tier.SECONDARY_BASELINE,
    Tier.CANDIDATE_BASELINE,
    Tier.PROBLEM,
)

BASELINE_TIERS: frozenset[Tier] = frozenset(TIER_PRIORITY[:-1])


class ChatMessage(BaseModel):
    """One chat turn in the ``{role, content}`` shape every chat template takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(description="system, user or assistant.")
    content: str


class PoolSample(BaseModel):
    """One labelled sample of the pool (the latest revision of a ``samples`` row)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sample_id: str = Field(min_length=1)
    status: Tier = Field(description="Baseline tier, or problem for this cycle's samples.")
    problem_types: list[str] = Field(default_factory=list)
    messages: list[ChatMessage] = Field(description="Context up to the problematic turn.")
    corrected_response: str = Field(min_length=1, description="The training target.")
    first_seen_version: str | None = None
    updated_at: AwareDatetime
    times_trained: int = Field(
        0,
        ge=0,
        description="Gate-passed versions that already trained on this label (a problem "
        "still unsolved after enough of them is down-weighted).",
    )

    @property
    def tier(self) -> Tier:
        """Alias of ``status``: the tier this sample trains at."""
        return self.status

    def training_messages(self) -> list[ChatMessage]:
        """The context with the corrected response as the final assistant turn."""
        context = list(self.messages)
        if context and context[-1].role == "assistant":
            context = context[:-1]
        return [*context, ChatMessage(role="assistant", content=self.corrected_response)]
