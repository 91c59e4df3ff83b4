"""Errors of the canary router and the rollout controller; each says what to do."""

from __future__ import annotations

from trainer.exceptions import TrainerError


class RolloutError(TrainerError):
    """Root of the rollout errors."""


class RoutingError(RolloutError):
    """A request or a routing table is invalid (empty user id, share outside [0, 100])."""


class RolloutStateError(RolloutError):
    """A rollout cannot move as asked (unknown version, already finished); start a new one."""
