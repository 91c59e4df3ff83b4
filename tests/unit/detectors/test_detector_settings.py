"""DetectorSettings: documented defaults, environment overrides, refused values."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from detectors import Detector, DetectorSettings
from loraloop.events import Acceptance, RiskLevel, Tier


def undocumented(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, info in model.model_fields.items():
        if not info.description:
            missing.append(prefix + name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += undocumented(annotation, f"{prefix}{name}.")
    return missing


def test_every_setting_is_documented() -> None:
    assert undocumented(DetectorSettings) == []


def test_defaults_match_the_design(settings: DetectorSettings) -> None:
    assert settings.repeat_min_turns == 3
    assert settings.similarity_threshold == 0.6
    assert settings.escalation_window_turns == 6
    assert settings.max_fingerprints == 20
    assert settings.high_value_tiers == {Tier.HIGH_VALUE, Tier.VIP}
    assert settings.sampler_endogenous_detectors == {Detector.QA_FLAG}


def test_every_detector_and_level_has_a_weight(settings: DetectorSettings) -> None:
    for detector in Detector:
        assert settings.risk_weights.of(detector) > 0
        assert settings.sampler_detector_weights.of(detector) > 0
    for level in RiskLevel:
        assert settings.qa_risk_level_weights.of(level) > 0
    for tier in Tier:
        assert settings.tier_weights.of(tier) > 0
    for acceptance in (Acceptance.RISK, Acceptance.REJECT):
        assert settings.qa_acceptance_weights.of(acceptance) > 0


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORALOOP_DETECTORS__REPEAT_MIN_TURNS", "2")
    monkeypatch.setenv("LORALOOP_DETECTORS__RISK_WEIGHTS__COMPLAINT", "3.5")
    monkeypatch.setenv("LORALOOP_DETECTORS__COMPLAINT_TERMS", '["差劲", "awful"]')
    monkeypatch.setenv("LORALOOP_DETECTORS__SAMPLER_ENDOGENOUS_DETECTORS", "[]")

    settings = DetectorSettings()

    assert settings.repeat_min_turns == 2
    assert settings.risk_weights.complaint == 3.5
    assert settings.risk_weights.qa_flag == 2.0
    assert settings.complaint_terms == ("差劲", "awful")
    assert settings.sampler_endogenous_detectors == frozenset()


@pytest.mark.parametrize(
    "env",
    [
        {"LORALOOP_DETECTORS__RISK_WEIGHTS__COMPLAINT": "0"},
        {"LORALOOP_DETECTORS__SIMILARITY_THRESHOLD": "1.5"},
        {"LORALOOP_DETECTORS__UNIFORM_QA_RATE": "-0.1"},
        {"LORALOOP_DETECTORS__TIER_WEIGHTS": '{"gold": 2}'},
        {"LORALOOP_DETECTORS__SAMPLER_ENDOGENOUS_DETECTORS": '["qa_review"]'},
    ],
)
def test_unsafe_values_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(ValidationError):
        DetectorSettings()
