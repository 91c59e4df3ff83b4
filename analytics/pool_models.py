"""What the pool functions return (``analytics.pool``): plain, frozen pydantic models.

Every text a person wrote or said (turns, corrected responses, notes, reasons,
evidence) and the ids that may name a person (``user_id``, ``conversation_id``)
can be masked with :meth:`SampleDetail.masked` / :meth:`SamplePage.masked` for
readers without the PII permission.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from loraloop.pii import mask_pii

_FROZEN = ConfigDict(extra="forbid", frozen=True)

MASKED_ID_FIELDS: Final = ("user_id", "conversation_id")
"""Ids that may carry personal data (a phone or an e-mail as the user's id): masked with
``mask_pii`` like every text, in summaries, sample pages, API answers and exports."""

REF_SEPARATOR: Final = "~"
REF_DIGEST_HEX: Final = 16
"""Hex digits of the keyed digest that tells two samples with the same masked id apart."""

_REF_RE: Final = re.compile(
    rf"(?P<masked>.+){re.escape(REF_SEPARATOR)}(?P<digest>[0-9a-f]{{{REF_DIGEST_HEX}}})"
)
_REF_KEY_CONTEXT: Final = b"loraloop sample reference\x00"


def ref_key(secret: bytes) -> str:
    """The key of sample references, derived from the console's secret (never the secret)."""
    return hashlib.sha256(_REF_KEY_CONTEXT + secret).hexdigest()


def ref_digest(sample_id: str, key: str) -> str:
    """``sha256(key + sample_id)``, first :data:`REF_DIGEST_HEX` hex digits (the warehouse
    computes the same to find a reference's sample)."""
    return hashlib.sha256((key + sample_id).encode()).hexdigest()[:REF_DIGEST_HEX]


def sample_ref(sample_id: str, key: str) -> str:
    """The id a reader without the PII permission sees and uses for a sample.

    A sample id is ``smp-<conversation_id>``, so it carries what the conversation id
    carries: when ``mask_pii`` changes it, the reference is the masked id, ``~`` and a
    digest keyed by the console (``smp-wa:[PHONE]~3f9a...``); otherwise the id itself.
    """
    masked = mask_pii(sample_id)
    if masked == sample_id:
        return sample_id
    return f"{masked}{REF_SEPARATOR}{ref_digest(sample_id, key)}"


def parse_ref(ref: str) -> tuple[str, str] | None:
    """``(masked id, digest)`` of something shaped like a reference, else None."""
    found = _REF_RE.fullmatch(ref)
    return (found["masked"], found["digest"]) if found else None


def mask_record(record: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of an exported sample record for a reader without the PII permission: every
    text and id masked (:data:`MASKED_ID_FIELDS` included), the ``sample_id`` replaced by
    its reference (:func:`sample_ref`)."""
    out: dict[str, Any] = key_digests(_mask_value(record), key)
    if isinstance(record.get("sample_id"), str):
        out["sample_id"] = sample_ref(record["sample_id"], key)
    return out


class SampleFilter(BaseModel):
    """Filters of the review queue; every field is optional and they combine with AND."""

    model_config = _FROZEN

    status: str | None = None
    problem_type: str | None = None
    detector: str | None = None
    risk_level: str | None = None
    risk_min: float | None = None
    risk_max: float | None = None
    model_version: str | None = None
    search: str | None = Field(
        None, description="Case-insensitive text in the ids, the label or the transcript."
    )
    reveal_pii: bool = Field(
        False,
        description="Search the raw texts and ids (a reader with the PII permission); "
        "otherwise only their PII-masked form is searched, so a masked digit or letter "
        "can never be probed.",
    )
    limit: int = Field(50, ge=1)
    offset: int = Field(0, ge=0)


class SampleSummary(BaseModel):
    """One row of the review queue (the ``pool`` view)."""

    model_config = _FROZEN

    sample_id: str
    conversation_id: str
    user_id: str
    status: str
    status_changed_at: datetime
    problem_types: tuple[str, ...]
    detectors: tuple[str, ...]
    risk_weight: float
    inclusion_probability: float
    sampled_by: str
    model_version: str
    acceptance: str
    risk_level: str
    labelled_by: str
    created_at: datetime
    needs_review: bool = False
    """The conversation changed after its latest label (``analytics.snapshots``): re-review."""
    review_reason: str = ""
    """What changed, when ``needs_review``."""

    def masked(self, key: str | None = None) -> SampleSummary:
        """A copy with the ids that may name a person (:data:`MASKED_ID_FIELDS`) masked,
        and with ``key`` the sample id replaced by its reference (:func:`sample_ref`)."""
        update = {k: mask_pii(getattr(self, k)) for k in MASKED_ID_FIELDS}
        if key is not None:
            update["sample_id"] = sample_ref(self.sample_id, key)
        return self.model_copy(update=update)


class SamplePage(BaseModel):
    """A page of the queue and the number of samples that match in all."""

    model_config = _FROZEN

    items: tuple[SampleSummary, ...]
    total: int
    limit: int
    offset: int
    masked_pii: bool = False

    def masked(self, key: str) -> SamplePage:
        """A copy with every summary's ids masked and sample ids as references
        (:meth:`SampleSummary.masked`)."""
        return self.model_copy(
            update={"items": tuple(s.masked(key) for s in self.items), "masked_pii": True}
        )


class TurnView(BaseModel):
    """One turn of the transcript."""

    model_config = _FROZEN

    turn_index: int
    role: str
    text: str
    ts: datetime
    model_version: str


class SignalView(BaseModel):
    """A detector that fired on the conversation, with its evidence (JSON text)."""

    model_config = _FROZEN

    signal_id: str
    detector: str
    turn_index: int | None
    risk_weight: float
    evidence: str
    ts: datetime


class LabelView(BaseModel):
    """The latest label of a sample (``sample_labels``)."""

    model_config = _FROZEN

    revision: int
    acceptance: str
    problem_types: tuple[str, ...]
    risk_level: str
    corrected_response: str
    notes: str
    labelled_by: str
    role: str
    source: str
    ts: datetime


class QAView(BaseModel):
    """A QA verdict received for the conversation (``llm.qa``)."""

    model_config = _FROZEN

    event_id: str
    reviewer: str
    acceptance: str
    problem_types: tuple[str, ...]
    risk_level: str
    corrected_response: str
    notes: str
    ts: datetime


class TransitionView(BaseModel):
    """One audit row (``sample_transitions``), proposals included."""

    model_config = _FROZEN

    transition_id: str
    sample_id: str
    seq: int
    from_status: str
    to_status: str
    action: str
    actor: str
    role: str
    actor_kind: str
    reason: str
    evidence: dict[str, Any]
    proposal: bool
    ts: datetime

    @property
    def rule(self) -> str:
        """The promotion rule a proposal cites ('' when none)."""
        return str(self.evidence.get("rule", ""))

    def masked(self, key: str) -> TransitionView:
        """A copy with reason and evidence masked and the sample id as its reference."""
        return _with_ref(_mask_transition(self), key)


class SampleDetail(BaseModel):
    """Everything the sample page shows."""

    model_config = _FROZEN

    summary: SampleSummary
    transcript: tuple[TurnView, ...]
    signals: tuple[SignalView, ...]
    label: LabelView | None
    qa_verdicts: tuple[QAView, ...]
    transitions: tuple[TransitionView, ...]
    open_proposals: tuple[TransitionView, ...]
    handed_off: bool
    prefill_corrected_response: str | None = Field(
        description="The last human agent reply when the conversation was handed off."
    )
    masked_pii: bool = False
    transcript_sha256: str = Field(
        "",
        description="The snapshot of the transcript shown (analytics.snapshots): sent back "
        "with a label, a conversation that changed meanwhile is refused (409).",
    )

    def with_refs(self, key: str) -> SampleDetail:
        """A copy whose sample id, wherever it appears, is its reference (:func:`sample_ref`);
        for readers without the PII permission, after :meth:`masked`."""
        return self.model_copy(
            update={
                "summary": self.summary.masked(key),
                "signals": tuple(
                    # an unkeyed hash of (detector, conversation id, weight): brute-forceable
                    s.model_copy(update={"signal_id": ref_digest(s.signal_id, key)})
                    for s in self.signals
                ),
                "transitions": tuple(_with_ref(t, key) for t in self.transitions),
                "open_proposals": tuple(_with_ref(t, key) for t in self.open_proposals),
                "transcript_sha256": ref_digest(self.transcript_sha256, key)
                if self.transcript_sha256
                else "",
            }
        )

    def masked(self) -> SampleDetail:
        """A copy with personal data masked in every free text and id but the sample id
        (:meth:`with_refs` replaces that one)."""
        return self.model_copy(
            update={
                "summary": self.summary.masked(),
                "transcript": tuple(
                    t.model_copy(update={"text": mask_pii(t.text)}) for t in self.transcript
                ),
                "signals": tuple(
                    s.model_copy(update={"evidence": mask_pii(s.evidence)}) for s in self.signals
                ),
                "label": _mask_label(self.label),
                "qa_verdicts": tuple(_mask_qa(q) for q in self.qa_verdicts),
                "transitions": tuple(_mask_transition(t) for t in self.transitions),
                "open_proposals": tuple(_mask_transition(t) for t in self.open_proposals),
                "prefill_corrected_response": _mask_optional(self.prefill_corrected_response),
                "masked_pii": True,
            }
        )


def _mask_optional(text: str | None) -> str | None:
    return None if text is None else mask_pii(text)


def _mask_label(label: LabelView | None) -> LabelView | None:
    if label is None:
        return None
    return label.model_copy(
        update={
            "corrected_response": mask_pii(label.corrected_response),
            "notes": mask_pii(label.notes),
        }
    )


def _mask_qa(qa: QAView) -> QAView:
    return qa.model_copy(
        update={
            "event_id": mask_pii(qa.event_id),
            "corrected_response": mask_pii(qa.corrected_response),
            "notes": mask_pii(qa.notes),
        }
    )


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def _mask_transition(row: TransitionView) -> TransitionView:
    return row.model_copy(
        update={"reason": mask_pii(row.reason), "evidence": _mask_value(row.evidence)}
    )


def transition_ref(transition_id: str, sample_id: str, key: str) -> str:
    """A transition id (``<sample_id>:<suffix>``) with its sample id as its reference."""
    if not transition_id.startswith(sample_id):
        return mask_pii(transition_id)
    return sample_ref(sample_id, key) + transition_id[len(sample_id) :]


def _with_ref(row: TransitionView, key: str) -> TransitionView:
    return row.model_copy(
        update={
            "sample_id": sample_ref(row.sample_id, key),
            "transition_id": transition_ref(row.transition_id, row.sample_id, key),
            "evidence": key_digests(row.evidence, key),
        }
    )


DIGEST_FIELDS: Final = frozenset({"transcript_sha256"})
"""Unkeyed hashes of raw text (analytics.snapshots): with the masked transcript, a guess
at a masked phone could be checked against them offline, so a reader without the PII
permission sees them keyed by the console (:func:`key_digests`)."""


def key_digests(value: Any, key: str) -> Any:
    """``value`` with each :data:`DIGEST_FIELDS` entry, at any depth, keyed (:func:`ref_digest`)."""
    if isinstance(value, dict):
        return {
            k: ref_digest(v, key) if k in DIGEST_FIELDS and isinstance(v, str) and v
            else key_digests(v, key)
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, list | tuple):
        return [key_digests(v, key) for v in value]
    return value
