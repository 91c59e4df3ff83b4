"""Detector and sampler settings (``DetectorSettings``, env prefix ``LORALOOP_DETECTORS__``).

Every threshold, weight and lexicon the detectors and the sampler use lives
here, so nothing in the rules is a hidden constant. Weights are grouped in small
models with one field per detector, tier, risk level or acceptance, so a
partial override cannot silently drop a key: set one with
``LORALOOP_DETECTORS__RISK_WEIGHTS__COMPLAINT=3`` or a whole group as JSON.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors.lexicon import COMPLAINT_TERMS, HUMAN_DEMAND_TERMS
from detectors.signal import Detector
from loraloop.events import Acceptance, RiskLevel, Tier

Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A positive, finite multiplier."""


class _PerDetector(BaseModel):
    """One positive weight per detector, looked up by detector name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def of(self, detector: str) -> float:
        """The weight of a detector by its name."""
        weight: float = getattr(self, detector)
        return weight


class RiskWeights(_PerDetector):
    """Risk weight each detector puts on the signals it emits."""

    repeated_followup: Weight = Field(1.0, description="The user asked the same thing again.")
    complaint: Weight = Field(2.0, description="Complaint, refund or dispute.")
    sudden_escalation: Weight = Field(1.5, description="Handoff with no earlier sign.")
    high_value_downvote: Weight = Field(1.5, description="Downvote from a valuable user.")
    qa_flag: Weight = Field(
        2.0, description="QA Risk/Reject; times the risk level and acceptance multipliers."
    )


class SamplerWeights(_PerDetector):
    """Sampler weight per detector: how much its conversations are wanted for labelling."""

    repeated_followup: Weight = Field(1.0, description="repeated_followup.")
    complaint: Weight = Field(1.5, description="complaint.")
    sudden_escalation: Weight = Field(1.0, description="sudden_escalation.")
    high_value_downvote: Weight = Field(1.0, description="high_value_downvote.")
    qa_flag: Weight = Field(
        2.0,
        description="qa_flag (used only when qa_flag is not in sampler_endogenous_detectors).",
    )


class TierWeights(BaseModel):
    """Sampler weight per user tier; an unknown tier counts as standard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    standard: Weight = Field(1.0, description="Standard users.")
    high_value: Weight = Field(1.5, description="High-value users.")
    vip: Weight = Field(2.0, description="VIP users.")

    def of(self, tier: Tier | None) -> float:
        """The weight of a tier; None (not known) is weighted as standard."""
        weight: float = getattr(self, (tier or Tier.STANDARD).value)
        return weight


class RiskLevelWeights(BaseModel):
    """Multiplier of the qa_flag risk weight per QA risk level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: Weight = Field(1.0, description="Risk level low.")
    medium: Weight = Field(1.5, description="Risk level medium.")
    high: Weight = Field(2.0, description="Risk level high.")
    critical: Weight = Field(3.0, description="Risk level critical.")

    def of(self, level: RiskLevel) -> float:
        """The multiplier of a risk level."""
        weight: float = getattr(self, level.value)
        return weight


class AcceptanceWeights(BaseModel):
    """Multiplier of the qa_flag risk weight per flagging QA acceptance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    risk: Weight = Field(1.0, description="Acceptance Risk.")
    reject: Weight = Field(1.5, description="Acceptance Reject.")

    def of(self, acceptance: Acceptance) -> float:
        """The multiplier of an acceptance (Accept never flags, so it has none)."""
        weight: float = getattr(self, acceptance.value.lower())
        return weight


class DetectorSettings(BaseSettings):
    """Thresholds, lexicons and weights of the detectors and the risk-weighted sampler."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_DETECTORS__", env_nested_delimiter="__", extra="ignore"
    )

    # repeated_followup
    repeat_min_turns: int = Field(
        3,
        ge=1,
        description="N: repeated_followup fires when this many user turns each near-duplicate "
        "an earlier user turn (with an assistant turn between); the first ask does not count.",
    )
    similarity_threshold: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Dice similarity of character n-gram sets at or above which two user "
        "turns are near-duplicates.",
    )
    ngram_size: int = Field(
        3, ge=1, description="Character n-gram size for texts that are not mostly CJK."
    )
    cjk_ngram_size: int = Field(
        2,
        ge=1,
        description="Character n-gram size for mostly-CJK texts (one CJK character carries "
        "about as much as a short English word).",
    )
    min_chars: int = Field(
        8,
        ge=1,
        description="Normalized non-CJK user turns shorter than this ('ok', 'thanks') are not "
        "fingerprinted, so acknowledgements never count as repeats.",
    )
    cjk_min_chars: int = Field(
        4, ge=1, description="The same floor for mostly-CJK user turns ('好的', '谢谢')."
    )
    max_fingerprint_chars: int = Field(
        256,
        ge=1,
        description="Only the first this-many normalized characters of a user turn are "
        "fingerprinted: bounds state size and per-turn work.",
    )
    max_fingerprints: int = Field(
        20,
        ge=1,
        description="M: the state keeps the fingerprints of at most this many recent user "
        "turns (and this many recent assistant turn indices).",
    )
    # sudden_escalation
    escalation_window_turns: int = Field(
        6,
        ge=0,
        description="K: a handoff or human demand is sudden only within this many turns of "
        "an assistant turn.",
    )
    max_scan_chars: int = Field(
        4000,
        ge=1,
        description="Only the first this-many characters of a user turn are normalized and "
        "scanned by the lexicons: bounds the worst-case cost of one event (a 16k-character "
        "paste) at the price of missing a complaint written after them.",
    )
    # lexicons
    complaint_terms: tuple[str, ...] = Field(
        COMPLAINT_TERMS,
        description="Complaint lexicon (zh + en): case-insensitive, whole words for "
        "non-CJK terms, substrings for CJK terms.",
    )
    human_demand_terms: tuple[str, ...] = Field(
        HUMAN_DEMAND_TERMS,
        description="Phrases that demand a human agent (zh + en), matched like the "
        "complaint lexicon.",
    )
    # high_value_downvote
    high_value_tiers: frozenset[Tier] = Field(
        frozenset({Tier.HIGH_VALUE, Tier.VIP}),
        description="Tiers whose thumbs_down fires high_value_downvote.",
    )
    # signals
    risk_weights: RiskWeights = Field(
        default_factory=RiskWeights,
        description="Risk weight each detector puts on its signals (qa_flag's is further "
        "multiplied by the risk level and acceptance multipliers).",
    )
    qa_risk_level_weights: RiskLevelWeights = Field(
        default_factory=RiskLevelWeights,
        description="qa_flag risk weight multiplier per QA risk level.",
    )
    qa_acceptance_weights: AcceptanceWeights = Field(
        default_factory=AcceptanceWeights,
        description="qa_flag risk weight multiplier per acceptance (Risk, Reject).",
    )
    evidence_max_chars: int = Field(
        500, ge=1, description="Texts copied into a signal's evidence are cut to this length."
    )
    unknown_user_id: str = Field(
        "unknown",
        min_length=1,
        description="user_id put on a signal when the conversation's user is not known yet "
        "(a QA verdict that arrives before any turn).",
    )
    # idempotency
    applied_window: int = Field(
        64,
        ge=1,
        description="How many recent turn indices and recent non-turn event ids the state "
        "remembers to drop replays; a turn older than the window is taken as a replay.",
    )
    # sampler
    sampler_base_rate: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Inclusion probability of a flagged conversation before weights.",
    )
    sampler_detector_weights: SamplerWeights = Field(
        default_factory=SamplerWeights,
        description="Sampler weight per detector (how much this detector's conversations "
        "are wanted for labelling).",
    )
    tier_weights: TierWeights = Field(
        default_factory=TierWeights, description="Sampler weight per user tier."
    )
    sampler_endogenous_detectors: frozenset[Detector] = Field(
        frozenset({Detector.QA_FLAG}),
        description="Detectors whose signals exist because the conversation was sampled "
        "(QA reviews the sample): they never enter the inclusion probability, so the "
        "stored π stays the design's. When one flags a conversation the design did not "
        "sample, it still gets a sample (sampled_by 'qa_review', conversations.sampled "
        "false, π the design's). Set [] to let every detector raise π.",
    )
    uniform_qa_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="p0: every conversation, flagged or not, is sampled for QA with at least "
        "this probability (抽样质检).",
    )
    sampler_salt: str = Field(
        "loraloop",
        description="Salt of the conversation hash; changing it draws an independent sample.",
    )
