"""Settings of the training service: when a cycle starts, where its files go.

``LORALOOP_TRAINER__*`` (e.g. ``LORALOOP_TRAINER__PERIOD_S=3600``). The dataset
mix, LoRA hyperparameters and gate keep their own classes in
:mod:`trainer.config`; this class only decides *when* and *where*.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REGISTRY_DIR = "registry"
WORK_DIR = "datasets"


class TrainerSettings(BaseSettings):
    """The training service (design: Training cycle, step 1)."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_TRAINER__", env_nested_delimiter="__", extra="ignore"
    )

    enabled: bool = Field(
        True, description="Run the service inside `loraloop up`; false leaves training to the CLI."
    )
    period_s: float = Field(
        86_400.0,
        gt=0,
        description="Start a cycle when this long has passed since the last one started "
        "(or when no cycle was ever recorded).",
    )
    problem_threshold: int = Field(
        50,
        ge=1,
        description="Start a cycle when this many problem samples of one type were labelled "
        "(with a corrected response) since the last cycle started.",
    )
    alert_rate: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Start a cycle when the share of conversations flagged by one detector or "
        "carrying one QA problem type reaches this line.",
    )
    alert_window_s: float = Field(
        86_400.0,
        gt=0,
        description="Look-back window of the alert rate (also never before the last cycle).",
    )
    alert_min_conversations: int = Field(
        200, ge=1, description="The alert rate is judged over at least this many conversations."
    )
    min_gap_s: float = Field(
        3_600.0,
        ge=0,
        description="No cycle starts sooner than this after the previous one started, whatever "
        "the trigger (stops a failing cycle from being retried in a tight loop).",
    )
    poll_interval_s: float = Field(60.0, gt=0, description="How often the triggers are checked.")
    registry_dir: Path | None = Field(
        None, description="The model registry; default <data_dir>/registry."
    )
    work_dir: Path | None = Field(
        None, description="Where each cycle's dataset is written; default <data_dir>/datasets."
    )
    include_simulated_labels: bool = Field(
        True, description="Train on labels marked simulated (demos); false leaves them out."
    )

    @model_validator(mode="after")
    def _gap_within_period(self) -> TrainerSettings:
        if self.min_gap_s > self.period_s:
            msg = (
                f"LORALOOP_TRAINER__MIN_GAP_S={self.min_gap_s} exceeds "
                f"LORALOOP_TRAINER__PERIOD_S={self.period_s}: lower the gap or raise the period"
            )
            raise ValueError(msg)
        return self

    def registry_root(self, data_dir: Path) -> Path:
        """The registry directory in force."""
        return self.registry_dir or data_dir / REGISTRY_DIR

    def datasets_root(self, data_dir: Path) -> Path:
        """The directory that holds one dataset directory per cycle."""
        return self.work_dir or data_dir / WORK_DIR
