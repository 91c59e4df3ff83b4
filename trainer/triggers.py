"""When a training cycle is due: pure logic over what the warehouse says.

Three triggers (design: Training cycle, step 1), checked over an
:class:`Observations` snapshot:

- ``threshold``: some problem type has at least ``problem_threshold`` problem
  samples labelled (with a corrected response) since the last cycle started;
- ``alert``: over the conversations since ``max(now - alert_window_s, last
  cycle start)`` (at least ``alert_min_conversations`` of them), the share
  flagged by one detector or carrying one QA problem type reached ``alert_rate``;
- ``period``: ``period_s`` passed since the last cycle started, or none ever did.

Nothing is due sooner than ``min_gap_s`` after the last cycle started, so a
failing cycle is not retried in a tight loop. The reason recorded is the first
trigger that fired in the order above; ``details`` holds the evidence of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trainer.service_config import TrainerSettings

REASON_THRESHOLD = "threshold"
REASON_ALERT = "alert"
REASON_PERIOD = "period"
REASON_MANUAL = "manual"


@dataclass(frozen=True)
class Observations:
    """What the triggers look at, read from the warehouse at ``now``."""

    now: datetime
    last_cycle_at: datetime | None
    new_labels_per_type: Mapping[str, int] = field(default_factory=dict)
    conversations: int = 0
    flagged: Mapping[str, int] = field(
        default_factory=dict,
        metadata={"doc": "Conversations per signal: 'detector:NAME' or 'qa:PROBLEM_TYPE'."},
    )


@dataclass(frozen=True)
class Trigger:
    """Why a cycle starts: the first reason that fired and the evidence of every one."""

    reason: str
    details: dict[str, Any]


def alert_since(
    now: datetime, last_cycle_at: datetime | None, settings: TrainerSettings
) -> datetime:
    """Start of the alert window: the look-back, but never before the last cycle started."""
    start = now - timedelta(seconds=settings.alert_window_s)
    return start if last_cycle_at is None else max(start, last_cycle_at)


def _threshold(obs: Observations, settings: TrainerSettings) -> dict[str, Any] | None:
    counts = sorted(obs.new_labels_per_type.items())
    reached = {kind: n for kind, n in counts if n >= settings.problem_threshold}
    if not reached:
        return None
    return {"threshold": settings.problem_threshold, "labelled_since_last_cycle": reached}


def _alert(obs: Observations, settings: TrainerSettings) -> dict[str, Any] | None:
    if obs.conversations < settings.alert_min_conversations:
        return None
    rates = {name: count / obs.conversations for name, count in sorted(obs.flagged.items())}
    crossed = {name: round(rate, 6) for name, rate in rates.items() if rate >= settings.alert_rate}
    if not crossed:
        return None
    return {"alert_rate": settings.alert_rate, "conversations": obs.conversations, "rates": crossed}


def _period(obs: Observations, settings: TrainerSettings) -> dict[str, Any] | None:
    if obs.last_cycle_at is None:
        return {"period_s": settings.period_s, "last_cycle_at": None}
    elapsed = (obs.now - obs.last_cycle_at).total_seconds()
    if elapsed < settings.period_s:
        return None
    return {
        "period_s": settings.period_s,
        "last_cycle_at": obs.last_cycle_at.isoformat(),
        "elapsed_s": round(elapsed, 3),
    }


def in_cooldown(obs: Observations, settings: TrainerSettings) -> bool:
    """True while the last cycle started less than ``min_gap_s`` ago."""
    if obs.last_cycle_at is None:
        return False
    return (obs.now - obs.last_cycle_at).total_seconds() < settings.min_gap_s


def due(obs: Observations, settings: TrainerSettings) -> Trigger | None:
    """The trigger that starts a cycle now, or None when nothing is due."""
    if in_cooldown(obs, settings):
        return None
    fired = {
        reason: evidence
        for reason, check in (
            (REASON_THRESHOLD, _threshold),
            (REASON_ALERT, _alert),
            (REASON_PERIOD, _period),
        )
        if (evidence := check(obs, settings)) is not None
    }
    if not fired:
        return None
    return Trigger(reason=next(iter(fired)), details=fired)
