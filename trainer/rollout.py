"""The rollout controller: step a canary up, hold it, roll it back or complete it.

Why: every step of a rollout (1 → 5 → 25 → 50 → 100 %) must be earned by a look at the
data, and a regression must end the canary without waiting for a person. ``decide`` is
pure: a comparison (``analytics.stats.Comparison``) and the rollout's state in, the
decision and the next state out:

- roll_back when any problem type or guardrail regressed;
- hold while the experiment is unhealthy (sample-ratio mismatch, multiple exposure);
- stay while the current step has fewer than ``min_conversations_per_step``
  conversations per arm, or a guardrail is not yet shown non-inferior;
- advance to the next step otherwise, and complete when that step is 100 %.

``RolloutStore`` persists the state as ``rollouts`` rows (one per decision, the
comparison as its evidence); ``RolloutController.tick`` runs one look end to end. The
router itself lives in :mod:`trainer.router` and is re-exported here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from analytics.comparison import comparison_to_dict, look
from analytics.stats import Comparison, Decision, Verdict
from trainer.rollout_config import FULL_ROLLOUT_PERCENT, RolloutSettings
from trainer.rollout_errors import RolloutStateError
from trainer.router import RouteDecision, Router, RoutingTable
from trainer.versions import utc_now

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

__all__ = [
    "RolloutAction",
    "RolloutController",
    "RolloutDecision",
    "RolloutState",
    "RolloutStatus",
    "RolloutStore",
    "RouteDecision",
    "Router",
    "RoutingTable",
    "arm_conversations",
    "decide",
    "routing_table",
]


class RolloutStatus(StrEnum):
    RUNNING = "running"
    HELD = "held"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


FINAL_STATUSES = frozenset({RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK})


class RolloutAction(StrEnum):
    """What a decision did; recorded in ``rollouts.decision``."""

    START = "start"
    ADVANCE = "advance"
    STAY = "stay"
    HOLD = "hold"
    ROLL_BACK = "roll_back"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where a rollout stands; ``conversations_at_step_start`` is the per-arm count then."""

    version: str
    parent: str
    step_index: int
    status: RolloutStatus
    step_started_at: datetime
    conversations_at_step_start: int = 0
    seq: int = 0

    def share_percent(self, settings: RolloutSettings) -> float:
        """The canary's share of users now (0 once rolled back)."""
        if self.status is RolloutStatus.ROLLED_BACK:
            return 0.0
        return settings.steps[min(self.step_index, len(settings.steps) - 1)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["step_started_at"] = self.step_started_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        return cls(
            **{
                **data,
                "status": RolloutStatus(data["status"]),
                "step_started_at": datetime.fromisoformat(data["step_started_at"]),
            }
        )


@dataclass(frozen=True, slots=True)
class RolloutDecision:
    """One decision: the action, the state after it and why."""

    action: RolloutAction
    state: RolloutState
    reason: str


def arm_conversations(comparison: Comparison) -> int:
    """Conversations served in the smaller arm (every metric shares one denominator)."""
    results = [*comparison.targets.values(), *comparison.guardrails.values()]
    return int(min((min(r.prev.events, r.new.events) for r in results), default=0))


def decide(
    comparison: Comparison,
    state: RolloutState,
    settings: RolloutSettings | None = None,
    *,
    now: datetime | None = None,
) -> RolloutDecision:
    """The next move of a running or held rollout, given one look at it (pure)."""
    cfg = settings or RolloutSettings()
    if state.status in FINAL_STATUSES:
        msg = f"rollout of {state.version} is {state.status}; start a new rollout instead"
        raise RolloutStateError(msg)
    when = now or utc_now()
    if comparison.decision is Decision.ROLL_BACK:
        rolled = replace(state, status=RolloutStatus.ROLLED_BACK, step_started_at=when)
        return RolloutDecision(RolloutAction.ROLL_BACK, rolled, comparison.reason)
    if comparison.decision is Decision.HOLD:
        held = replace(state, status=RolloutStatus.HELD)
        return RolloutDecision(RolloutAction.HOLD, held, comparison.reason)
    running = replace(state, status=RolloutStatus.RUNNING)
    waiting = _waiting_reason(comparison, state, cfg)
    if waiting is not None:
        return RolloutDecision(RolloutAction.STAY, running, waiting)
    return _step_up(running, arm_conversations(comparison), cfg, when)


def _waiting_reason(
    comparison: Comparison, state: RolloutState, cfg: RolloutSettings
) -> str | None:
    in_step = arm_conversations(comparison) - state.conversations_at_step_start
    if in_step < cfg.min_conversations_per_step:
        return (
            f"{in_step} conversations per arm in this step < {cfg.min_conversations_per_step}; "
            "keep observing"
        )
    if cfg.require_guardrails_non_inferior and not comparison.all_guardrails_non_inferior:
        pending = sorted(
            name
            for name, r in comparison.guardrails.items()
            if r.verdict is not Verdict.NON_INFERIOR
        )
        return f"guardrails not yet shown non-inferior: {', '.join(pending)}"
    last_canary = state.step_index + 1 >= len(cfg.steps) - 1
    solved = any(r.verdict is Verdict.SOLVED_CANDIDATE for r in comparison.targets.values())
    if cfg.complete_requires_solved_target and last_canary and not solved:
        return "no target problem type is solved yet: the rollout stays before 100 %"
    return None


def _step_up(
    state: RolloutState, conversations: int, cfg: RolloutSettings, when: datetime
) -> RolloutDecision:
    index = min(state.step_index + 1, len(cfg.steps) - 1)
    share = cfg.steps[index]
    moved = replace(
        state, step_index=index, step_started_at=when, conversations_at_step_start=conversations
    )
    if share >= FULL_ROLLOUT_PERCENT:
        done = replace(moved, status=RolloutStatus.COMPLETED)
        return RolloutDecision(RolloutAction.COMPLETE, done, f"{state.version} serves everyone")
    return RolloutDecision(RolloutAction.ADVANCE, moved, f"advanced to {share:g} %")


def routing_table(state: RolloutState, settings: RolloutSettings) -> RoutingTable:
    """What the router serves in ``state``."""
    if state.status is RolloutStatus.COMPLETED:
        return RoutingTable(stable=state.version)
    if state.status is RolloutStatus.ROLLED_BACK:
        return RoutingTable(stable=state.parent)
    return RoutingTable(state.parent, state.version, state.share_percent(settings))


ROLLOUT_COLUMNS = (
    "rollout_id", "version", "parent", "step_percent", "decision", "evidence", "actor", "ts",
)  # fmt: skip

_LATEST_SQL = """
SELECT evidence FROM rollouts FINAL
WHERE version = {version:String}
ORDER BY ts DESC, JSONExtractUInt(evidence, 'state', 'seq') DESC
LIMIT 1
"""


class RolloutStore:
    """Rollout states as ``rollouts`` rows: one per decision, with its evidence."""

    def __init__(self, warehouse: Warehouse, settings: RolloutSettings | None = None) -> None:
        self._warehouse = warehouse
        self.settings = settings or RolloutSettings()

    def start(self, version: str, parent: str, *, now: datetime | None = None) -> RolloutState:
        """Begin a rollout at the first step."""
        if self.load(version) is not None:
            msg = f"{version} already has a rollout; a version is rolled out once"
            raise RolloutStateError(msg)
        when = now or utc_now()
        state = RolloutState(version, parent, 0, RolloutStatus.RUNNING, when)
        self.record(RolloutDecision(RolloutAction.START, state, "rollout started"), now=when)
        return state

    def record(
        self,
        decision: RolloutDecision,
        *,
        comparison: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Write one decision with its evidence (the state, the reason, the comparison)."""
        state = decision.state
        evidence = {"state": state.to_dict(), "reason": decision.reason, "comparison": comparison}
        row = [
            uuid.uuid4().hex,
            state.version,
            state.parent,
            state.share_percent(self.settings),
            decision.action.value,
            orjson.dumps(evidence, option=orjson.OPT_SORT_KEYS).decode(),
            self.settings.actor,
            now or utc_now(),
        ]
        self._warehouse.insert("rollouts", [row], column_names=ROLLOUT_COLUMNS)
        logger.info("rollout %s: %s (%s)", state.version, decision.action, decision.reason)

    def load(self, version: str) -> RolloutState | None:
        """The latest state of ``version``'s rollout; None if it never started."""
        rows = self._warehouse.query(_LATEST_SQL, {"version": version}).result_rows
        if not rows:
            return None
        return RolloutState.from_dict(orjson.loads(rows[0][0])["state"])


class RolloutController:
    """One look at a running rollout: compare, decide, record, re-route."""

    def __init__(
        self,
        warehouse: Warehouse,
        router: Router,
        *,
        settings: RolloutSettings | None = None,
    ) -> None:
        self._warehouse = warehouse
        self._router = router
        self.settings = settings or router.settings
        self.store = RolloutStore(warehouse, self.settings)

    def tick(
        self,
        version: str,
        *,
        trained_sample_ids: Collection[str] | None = None,
        now: datetime | None = None,
    ) -> RolloutDecision:
        """Look at ``version``'s rollout once and act on it."""
        state = self.store.load(version)
        if state is None:
            msg = f"{version} has no rollout; start one with RolloutStore.start"
            raise RolloutStateError(msg)
        when = now or utc_now()
        self._router.flush()
        comparison = look(
            self._warehouse,
            new=state.version,
            prev=state.parent,
            split=state.share_percent(self.settings) / FULL_ROLLOUT_PERCENT,
            actor=self.settings.actor,
            since=state.step_started_at,
            trained_sample_ids=trained_sample_ids,
            now=when,
            excluded_users=sorted(self.settings.allowlist),
        )
        decision = decide(comparison, state, self.settings, now=when)
        decision = replace(decision, state=replace(decision.state, seq=state.seq + 1))
        payload = comparison_to_dict(comparison, new=state.version, prev=state.parent)
        self.store.record(decision, comparison=payload, now=when)
        self._router.update(routing_table(decision.state, self.settings))
        return decision
