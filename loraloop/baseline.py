"""An existing baseline as a JSONL file: conversations that end in their accepted answer.

One JSON object a line (``loraloop samples import FILE``)::

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "tier": "core_baseline", "problem_types": ["missing_knowledge"], "id": "faq-7"}

``messages`` alternate freely between ``user`` and ``assistant`` but the last one is the
accepted assistant answer (the training target) and the one before it is the user turn it
answers: the trainer's context is every message before the answer, cut to end with a user
turn (:mod:`trainer.transcripts`), so anything else would silently train on less than the
file says. ``tier`` defaults to ``core_baseline``; ``problem_types`` (what the answer
guards against; every trainable label needs one) may come from the command line instead;
``id`` names the conversation so that a corrected re-import is refused rather than added
twice (without it the content's hash names it). Pure: no I/O beyond reading the file.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from loraloop.eventfile import LineError, decode_object
from loraloop.events import Id, ProblemType, Text, describe_error, first_field
from loraloop.lifecycle import BASELINE_TIERS, SampleStatus

MIN_MESSAGES: Final = 2
"""A user message and the accepted answer to it."""
MAX_MESSAGES: Final = 200
"""Most messages in one imported conversation (a long support thread fits; a log does not)."""

CONVERSATION_PREFIX: Final = "import-"
"""Imported conversations are ``import-<id>`` (or ``import-<content hash>``): never a served
conversation's id, so an import cannot collide with captured traffic."""

CONTENT_HASH_CHARS: Final = 24
"""Hex characters of the content's SHA-256 in a conversation id made from it (96 bits)."""

TierName = Literal["core_baseline", "secondary_baseline", "candidate_baseline"]
DEFAULT_TIER: Final[TierName] = "core_baseline"


class BaselineMessage(BaseModel):
    """One message of an imported conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    content: Text

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            msg = "blank: write the message's text"
            raise ValueError(msg)
        return value


class BaselineConversation(BaseModel):
    """One line of a baseline file (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[BaselineMessage, ...] = Field(max_length=MAX_MESSAGES)
    tier: TierName = DEFAULT_TIER
    problem_types: tuple[ProblemType, ...] = ()
    id: Id | None = None

    @field_validator("messages")
    @classmethod
    def _ends_in_an_answer(cls, value: tuple[BaselineMessage, ...]) -> tuple[BaselineMessage, ...]:
        if len(value) < MIN_MESSAGES:
            msg = (
                "needs the user message and the accepted assistant answer to it (at least "
                f"{MIN_MESSAGES} messages), got {len(value)}"
            )
            raise ValueError(msg)
        if value[-1].role != "assistant":
            msg = (
                "the last message must be the accepted assistant answer (role assistant), "
                f"got role {value[-1].role}"
            )
            raise ValueError(msg)
        if value[-2].role != "user":
            msg = (
                "the message before the accepted answer must be the user turn it answers "
                "(role user), got role assistant: merge the two assistant messages"
            )
            raise ValueError(msg)
        return value

    @property
    def status(self) -> SampleStatus:
        status = SampleStatus(self.tier)
        assert status in BASELINE_TIERS  # noqa: S101 (TierName lists baseline tiers only)
        return status

    @property
    def answer(self) -> str:
        """The accepted answer: the training target (the label's corrected response)."""
        return self.messages[-1].content

    def content_sha256(self) -> str:
        """The SHA-256 of the messages alone (roles and texts): what makes two lines the same."""
        canonical = orjson.dumps([[m.role, m.content] for m in self.messages])
        return hashlib.sha256(canonical).hexdigest()

    @property
    def conversation_id(self) -> str:
        """``import-<id>``, or ``import-<content hash>`` without an id (idempotent)."""
        return CONVERSATION_PREFIX + (self.id or self.content_sha256()[:CONTENT_HASH_CHARS])


@dataclass(frozen=True, slots=True)
class BaselineLine:
    """A line that is a valid baseline conversation."""

    line_no: int
    conversation: BaselineConversation


def parse_baseline_line(line_no: int, raw: bytes) -> BaselineLine | LineError:
    """Decode and validate one line of a baseline file."""
    obj = decode_object(
        line_no,
        raw,
        needs='"messages"',
        not_object='<payload>: expected a JSON object with "messages"',
    )
    if isinstance(obj, LineError):
        return obj
    try:
        conversation = BaselineConversation.model_validate(obj)
    except ValidationError as e:
        return LineError(line_no, first_field(e), describe_error(e), raw)
    return BaselineLine(line_no, conversation)


def read_baseline(path: Path) -> Iterator[BaselineLine | LineError]:
    """Parse every non-blank line of ``path`` in order (1-based line numbers; a UTF-8 byte
    order mark is not part of the first line)."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            stripped = (raw.removeprefix(codecs.BOM_UTF8) if line_no == 1 else raw).strip()
            if stripped:
                yield parse_baseline_line(line_no, stripped)


__all__ = [
    "DEFAULT_TIER",
    "BaselineConversation",
    "BaselineLine",
    "BaselineMessage",
    "parse_baseline_line",
    "read_baseline",
]
