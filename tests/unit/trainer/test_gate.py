"""The gate's decision logic over measured numbers."""

from __future__ import annotations

from trainer.config import GateConfig
from trainer.gate import GateNumbers, decide


def _numbers(**overrides: float | int | None) -> GateNumbers:
    values: dict[str, float | int | None] = {
        "heldout_loss": 1.0,
        "parent_heldout_loss": 2.0,
        "baseline_loss": 1.5,
        "parent_baseline_loss": 1.5,
        "probes": 4,
        "probes_changed": 1,
    }
    return GateNumbers.model_validate(values | overrides)


def test_improvement_without_regression_passes() -> None:
    result = decide(_numbers(), GateConfig())
    assert result.passed
    assert len(result.reasons) == 3


def test_no_improvement_fails() -> None:
    result = decide(_numbers(heldout_loss=2.0), GateConfig())
    assert not result.passed
    assert "did not improve" in result.reasons[0]


def test_minimum_relative_improvement() -> None:
    config = GateConfig(min_improvement=0.6)
    assert not decide(_numbers(), config).passed
    assert decide(_numbers(heldout_loss=0.7), config).passed


def test_baseline_regression_within_tolerance_passes_beyond_fails() -> None:
    config = GateConfig(baseline_tolerance=0.1)
    assert decide(_numbers(baseline_loss=1.64), config).passed
    result = decide(_numbers(baseline_loss=1.66), config)
    assert not result.passed
    assert any("regressed" in reason for reason in result.reasons)


def test_unchanged_generations_fail_unless_not_required() -> None:
    assert not decide(_numbers(probes_changed=0), GateConfig()).passed
    assert decide(_numbers(probes_changed=0), GateConfig(require_probe_change=False)).passed


def test_missing_heldout_fails_missing_baseline_is_noted() -> None:
    assert not decide(_numbers(heldout_loss=None), GateConfig()).passed
    result = decide(_numbers(baseline_loss=None), GateConfig())
    assert result.passed
    assert any("skipped" in reason for reason in result.reasons)
