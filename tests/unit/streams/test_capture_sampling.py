"""Capture's conversation and sample rows carry the design's π; a QA verdict never rewrites it.

Issue 14, item 2: ``qa_flag`` fires on conversations QA reviews, mostly samples, so
letting it into the max rule rewrote a uniform sample's π from 0.01 to 1.0 after one
Risk verdict. A verdict on a conversation the design did not sample still makes a
sample (to label and train on), ``sampled_by`` "qa_review", outside the design.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analytics.rows import CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from detectors.config import DetectorSettings
from detectors.order import END_OF_TIME
from loraloop.events import QAVerdict, Turn
from loraloop.settings import StreamSettings
from streams.capture import Capture, CaptureBatch, Entry
from streams.capture_core import RawMessage
from tests.unit.detectors.test_risk_sampler import first_id

T0 = datetime(2026, 11, 1, 10, tzinfo=UTC)
SETTINGS = DetectorSettings()


def _chat(cid: str) -> list[Turn]:
    """A user question and the assistant's answer: no detector fires."""
    common = {"conversation_id": cid, "user_id": f"u-{cid}"}
    return [
        Turn(event_id=f"{cid}-t0", ts=T0, turn_index=0, role="user",
             text="How much is the premium plan?", **common),
        Turn(event_id=f"{cid}-t1", ts=T0 + timedelta(seconds=1), turn_index=1,
             role="assistant", text="It is 20 a month.", model_version="model_v1", **common),
    ]  # fmt: skip


def _verdict(cid: str, acceptance: str) -> QAVerdict:
    return QAVerdict(
        event_id=f"{cid}-qa",
        ts=T0 + timedelta(minutes=5),
        conversation_id=cid,
        reviewer="qa-1",
        acceptance=acceptance,
        problem_types=["missing_knowledge"],
        risk_level="critical",
    )


def _run(
    capture: Capture, events: Sequence[Any], entries: dict[str, Entry] | None = None
) -> CaptureBatch:
    """Process events as final at once (the watermark is past them)."""
    messages = [RawMessage("llm.x", 0, offset, b"") for offset in range(len(events))]
    return capture.process(
        list(zip(messages, events, strict=True)), entries or {}, {}, lambda _: END_OF_TIME
    )


def _conversation(batch: CaptureBatch) -> dict[str, Any]:
    (row,) = batch.rows["conversations"]
    return dict(zip(CONVERSATION_COLUMNS, row, strict=True))


def _sample(batch: CaptureBatch) -> dict[str, Any] | None:
    rows = batch.rows["samples"]
    assert len(rows) <= 1
    return dict(zip(SAMPLE_COLUMNS, rows[0], strict=True)) if rows else None


@pytest.fixture
def capture() -> Capture:
    return Capture(StreamSettings(), SETTINGS)


def test_a_risk_verdict_leaves_a_uniform_sample_at_its_design_probability(
    capture: Capture,
) -> None:
    p0 = SETTINGS.uniform_qa_rate
    cid = first_id(SETTINGS, below=p0)
    first = _run(capture, _chat(cid))
    assert _conversation(first)["sampled"] is True
    assert _conversation(first)["inclusion_probability"] == pytest.approx(p0)

    reviewed = _run(capture, [_verdict(cid, "Risk")], dict(first.touched))

    conversation, sample = _conversation(reviewed), _sample(reviewed)
    assert conversation["detectors"] == ["qa_flag"]  # the signal is still recorded
    assert conversation["sampled"] is True
    assert conversation["inclusion_probability"] == pytest.approx(p0)  # not 1.0
    assert sample is not None
    assert sample["inclusion_probability"] == pytest.approx(p0)
    assert sample["sampled_by"] == "uniform_qa"


def test_a_reject_on_an_unsampled_conversation_makes_a_review_sample_outside_the_design(
    capture: Capture,
) -> None:
    p0 = SETTINGS.uniform_qa_rate
    cid = first_id(SETTINGS, below=1.0, at_least=0.5)
    first = _run(capture, _chat(cid))
    assert _conversation(first)["sampled"] is False
    assert _sample(first) is None

    reviewed = _run(capture, [_verdict(cid, "Reject")], dict(first.touched))

    conversation, sample = _conversation(reviewed), _sample(reviewed)
    assert conversation["sampled"] is False  # Horvitz–Thompson never counts it
    assert conversation["inclusion_probability"] == pytest.approx(p0)
    assert sample is not None  # but it can be labelled and trained on
    assert sample["sample_id"] == f"smp-{cid}"
    assert sample["sampled_by"] == "qa_review"
    assert sample["inclusion_probability"] == pytest.approx(p0)
    assert reviewed.samples == 1


def test_an_accept_on_an_unsampled_conversation_makes_no_sample(capture: Capture) -> None:
    cid = first_id(SETTINGS, below=1.0, at_least=0.5)

    batch = _run(capture, [*_chat(cid), _verdict(cid, "Accept")])

    assert _conversation(batch)["sampled"] is False
    assert _sample(batch) is None
