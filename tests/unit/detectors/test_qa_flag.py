"""qa_flag: QA Risk / Reject verdicts, risk weight scaled by risk level and acceptance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from detectors import Detector
from loraloop.events import Acceptance, RiskLevel

if TYPE_CHECKING:
    from conftest import Chat


@pytest.mark.parametrize(
    ("acceptance", "level", "weight"),
    [
        (Acceptance.RISK, RiskLevel.LOW, 2.0),
        (Acceptance.RISK, RiskLevel.CRITICAL, 6.0),
        (Acceptance.REJECT, RiskLevel.MEDIUM, 4.5),
        (Acceptance.REJECT, RiskLevel.CRITICAL, 9.0),
    ],
)
def test_risk_and_reject_fire_with_scaled_weight(
    chat: Chat, acceptance: Acceptance, level: RiskLevel, weight: float
) -> None:
    chat.user("能保证一定赚钱吗")
    chat.bot("保证稳赚", version="v4")

    signals = chat.qa(acceptance, level)

    assert [s.detector for s in signals] == [Detector.QA_FLAG]
    signal = signals[0]
    assert signal.risk_weight == pytest.approx(weight)
    assert signal.user_id == "user-1"
    assert signal.model_version == "v4"
    assert signal.turn_index is None
    assert signal.evidence["acceptance"] == acceptance.value
    assert signal.evidence["risk_level"] == level.value
    assert signal.evidence["problem_types"] == ["missing_knowledge"]


def test_accept_does_not_fire(chat: Chat) -> None:
    assert chat.qa(Acceptance.ACCEPT, RiskLevel.CRITICAL) == []


def test_fires_again_only_for_a_heavier_verdict(chat: Chat) -> None:
    first = chat.qa(Acceptance.RISK, RiskLevel.LOW)
    heavier = chat.qa(Acceptance.REJECT, RiskLevel.HIGH)
    lighter = chat.qa(Acceptance.RISK, RiskLevel.MEDIUM)

    assert [s.risk_weight for s in first + heavier] == [2.0, 6.0]
    assert lighter == []
    assert chat.state.fired == {Detector.QA_FLAG: 6.0}


def test_verdict_before_any_turn_has_the_placeholder_user(chat: Chat) -> None:
    signals = chat.qa(Acceptance.REJECT)

    assert signals[0].user_id == chat.settings.unknown_user_id
    assert signals[0].model_version is None
