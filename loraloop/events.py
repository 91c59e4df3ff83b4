"""Event contracts: what producers put on each topic (docs/architecture.md, "Event contracts").

Strict on purpose: timezone-aware timestamps, closed enums, non-empty ids,
bounded text, unknown fields refused. A payload that fails here never stops an
agent; it goes to the dead-letter topic with :func:`describe_error`'s message.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_TEXT_CHARS: Final = 16_000
"""Longest turn text, comment or corrected response accepted (characters)."""

MAX_ID_CHARS: Final = 128
"""Longest id accepted (characters)."""

MAX_TURN_INDEX: Final = 2**32 - 1
"""Largest turn index: the warehouse stores it as UInt32, which would wrap a larger one."""

MAX_AMOUNT: Final = 1e15
"""Largest outcome value or lifetime value: beyond it a Float64 sum loses whole units."""

MAX_EVENT_BYTES: Final = 256 * 1024
"""Largest encoded event accepted: the contracts' bounded fields fit in far less, so a
bigger payload is refused before it is parsed (and its dead letter stays small)."""

DEAD_LETTER_PREFIX_BYTES: Final = 4096
"""How much of a refused payload its dead letter carries; the size and a SHA-256 name the
whole, which stays in the source topic at its offset."""

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
ProblemType = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=MAX_ID_CHARS)
]


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    HUMAN_AGENT = "human_agent"
    SYSTEM = "system"


class FeedbackKind(StrEnum):
    THUMBS_UP = "thumbs_up"
    THUMBS_DOWN = "thumbs_down"
    COMPLAINT = "complaint"
    REFUND_REQUEST = "refund_request"
    DISPUTE = "dispute"


class Tier(StrEnum):
    STANDARD = "standard"
    HIGH_VALUE = "high_value"
    VIP = "vip"


class HandoffInitiator(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    RULE = "rule"


class Acceptance(StrEnum):
    ACCEPT = "Accept"
    RISK = "Risk"
    REJECT = "Reject"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class OutcomeKind(StrEnum):
    CTA_CLICK = "cta_click"
    CONVERSION = "conversion"
    REFUND = "refund"


class Contract(BaseModel):
    """Fields and rules every event shares: an idempotency key and an aware timestamp."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    ts: AwareDatetime


class Turn(Contract):
    """One message in a conversation (``llm.turns``)."""

    conversation_id: Id
    user_id: Id
    turn_index: int = Field(strict=True, ge=0, le=MAX_TURN_INDEX)
    role: Role
    text: Text
    model_version: Id | None = None
    has_cta: bool = False

    @model_validator(mode="after")
    def _assistant_has_version(self) -> Turn:
        if self.role is Role.ASSISTANT and self.model_version is None:
            detail = InitErrorDetails(
                type=PydanticCustomError("missing", "required on assistant turns"),
                loc=("model_version",),
                input=None,
            )
            raise ValidationError.from_exception_data(type(self).__name__, [detail])
        return self


class Feedback(Contract):
    """A user's reaction (``llm.feedback``); ``user_tier`` when the producer knows it."""

    conversation_id: Id
    user_id: Id
    turn_index: int | None = Field(strict=True, default=None, ge=0, le=MAX_TURN_INDEX)
    kind: FeedbackKind
    comment: Text | None = None
    user_tier: Tier | None = None


class Handoff(Contract):
    """The conversation went to a human agent (``llm.handoffs``)."""

    conversation_id: Id
    user_id: Id
    turn_index: int = Field(strict=True, ge=0, le=MAX_TURN_INDEX)
    initiated_by: HandoffInitiator
    reason: Text | None = None


class QAVerdict(Contract):
    """A QA reviewer's judgement of a conversation (``llm.qa``)."""

    conversation_id: Id
    sample_id: Id | None = None
    reviewer: Id
    acceptance: Acceptance
    problem_types: list[ProblemType] = Field(default_factory=list, max_length=32)
    risk_level: RiskLevel
    corrected_response: Text | None = None
    notes: Text | None = None


class Outcome(Contract):
    """A business outcome attributed to a conversation (``llm.outcomes``)."""

    conversation_id: Id
    user_id: Id
    kind: OutcomeKind
    value: float = Field(strict=True, ge=0, le=MAX_AMOUNT, allow_inf_nan=False)


class UserProfile(Contract):
    """The latest profile of a user (``llm.users``, compacted, keyed by user_id)."""

    user_id: Id
    tier: Tier
    lifetime_value: float = Field(strict=True, ge=0, le=MAX_AMOUNT, allow_inf_nan=False)


class Signal(BaseModel):
    """A detector fired; ``signal_id`` is deterministic so a replay yields the same id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_id: Id
    detector: Id
    conversation_id: Id
    user_id: Id
    model_version: Id | None = None
    turn_index: int | None = Field(default=None, ge=0, le=MAX_TURN_INDEX)
    risk_weight: float = Field(gt=0, allow_inf_nan=False)
    evidence: dict[str, Any] = Field(default_factory=dict)
    ts: AwareDatetime


class DeadLetter(BaseModel):
    """A payload that could not be processed (``llm.dlq``), with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_topic: str
    partition: int
    offset: int
    raw_b64: str
    """Base64 of the payload's first :data:`DEAD_LETTER_PREFIX_BYTES` bytes."""
    error: str
    ts: datetime
    raw_bytes: int = Field(default=0, ge=0)
    """The whole payload's size (0 in letters written before sizes were recorded)."""
    raw_sha256: str = ""
    """The whole payload's SHA-256 (hex), to find it again at its source offset."""

    @classmethod
    def of_payload(
        cls, *, source_topic: str, partition: int, offset: int, raw: bytes, error: str
    ) -> DeadLetter:
        """A letter for ``raw``: a bounded prefix, its size and hash, however big it was."""
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            raw_b64=base64.b64encode(raw[:DEAD_LETTER_PREFIX_BYTES]).decode("ascii"),
            error=error,
            ts=datetime.now(UTC),
            raw_bytes=len(raw),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
        )


EventModel = Turn | Feedback | Handoff | QAVerdict | Outcome | UserProfile
EventType = Literal["turn", "feedback", "handoff", "qa", "outcome", "user"]


class Kind(BaseModel):
    """How one event type travels: its contract, topic and partition key."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    model: type[Contract]
    topic: str
    key_field: str


KINDS: Final[dict[str, Kind]] = {
    k.name: k
    for k in (
        Kind(name="turn", model=Turn, topic="llm.turns", key_field="conversation_id"),
        Kind(name="feedback", model=Feedback, topic="llm.feedback", key_field="conversation_id"),
        Kind(name="handoff", model=Handoff, topic="llm.handoffs", key_field="conversation_id"),
        Kind(name="qa", model=QAVerdict, topic="llm.qa", key_field="conversation_id"),
        Kind(name="outcome", model=Outcome, topic="llm.outcomes", key_field="conversation_id"),
        Kind(name="user", model=UserProfile, topic="llm.users", key_field="user_id"),
    )
}
"""Event types by the ``type`` field used in JSONL files."""

DLQ_TOPIC: Final = "llm.dlq"

_KIND_BY_TOPIC: Final = {kind.topic: kind for kind in KINDS.values()}


def kind_of_topic(topic: str) -> Kind:
    """The event kind carried by a (prefix-free) topic name."""
    kind = _KIND_BY_TOPIC.get(topic)
    if kind is None:
        msg = f"no event kind is carried on topic {topic!r}"
        raise KeyError(msg)
    return kind


def oversize_error(size: int) -> str | None:
    """The refusal of a payload of ``size`` bytes, or None when it is within the limit."""
    if size <= MAX_EVENT_BYTES:
        return None
    return (
        f"<payload>: {size} bytes, over the {MAX_EVENT_BYTES}-byte limit for one event; "
        "split the text or shorten it (turn text is capped at "
        f"{MAX_TEXT_CHARS} characters)"
    )


def describe_error(error: ValidationError) -> str:
    """One line per failing field, ``field: message``, for logs and dead letters."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "<payload>"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def first_field(error: ValidationError) -> str | None:
    """The first field a validation error names, or None for whole-payload errors."""
    for item in error.errors(include_url=False):
        if item["loc"]:
            return ".".join(str(p) for p in item["loc"])
    return None
