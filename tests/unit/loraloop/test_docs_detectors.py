"""The examples of docs/detectors.md hold for the default settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.config import DetectorSettings
from detectors.lexicon import find_term
from detectors.repeated_followup import fingerprint
from detectors.text import dice, normalize

DOC = Path(__file__).resolve().parents[3] / "docs" / "detectors.md"
SETTINGS = DetectorSettings()

COMPLAINTS = {
    "I want my money back": "money back",
    "This is a SCAM!!": "scam",
    "我要投诉你们": "投诉",
    "我要退款": "退款",
    "Can I get a refund?": "refund",
    "I will not file a complaint": "file a complaint",
    "Is the course refundable?": None,
    "这个课程可以退吗": None,
}
HUMAN_DEMANDS = {
    "Can I talk to a human?": "talk to a human",
    "转人工": "转人工",
    "I am a real person too": "real person",
    "I want a human": None,
}
SIMILAR = [
    ("How much is the Python course?", "how much is the python course??", 1.0),
    ("Python课程多少钱", "python课程多少钱？", 1.0),
    ("When does the class start?", "When does the next class start?", 0.86),
    ("How much is the Python course?", "What does the Python course cost?", 0.61),
    ("How much is the Python course?", "How much is the Java course?", 0.73),
]


@pytest.mark.parametrize(("text", "term"), COMPLAINTS.items())
def test_complaint_examples(text: str, term: str | None) -> None:
    assert find_term(normalize(text), SETTINGS.complaint_terms) == term
    assert text in DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize(("text", "term"), HUMAN_DEMANDS.items())
def test_human_demand_examples(text: str, term: str | None) -> None:
    assert find_term(normalize(text), SETTINGS.human_demand_terms) == term


@pytest.mark.parametrize(("left", "right", "similarity"), SIMILAR)
def test_similarity_examples(left: str, right: str, similarity: float) -> None:
    a, b = fingerprint(normalize(left), SETTINGS), fingerprint(normalize(right), SETTINGS)
    assert a is not None
    assert b is not None
    assert round(dice(a, b), 2) == similarity
    assert similarity >= SETTINGS.similarity_threshold
    assert f"→ {similarity:g}" in DOC.read_text(encoding="utf-8")


def test_acknowledgements_are_not_fingerprinted() -> None:
    assert fingerprint(normalize("ok"), SETTINGS) is None
    assert fingerprint(normalize("好的"), SETTINGS) is None
