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
comparison as its evidence); ``RolloutController.tick`` runs one look end to end:
compare, record the look, decide, then either propose the samples whose family is fixed
(:func:`analytics.proposals.propose_solved`, with the version's manifest) or, on a roll
back, withdraw the version's pending proposals and flag approvals made on its evidence
(:func:`analytics.proposals.withdraw_version`); record the decision; re-route.
``RolloutController.roll_back`` is the manual rollback, with the same bookkeeping. The
router itself lives in :mod:`trainer.router` and is re-exported here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from analytics.comparison import compare, comparison_to_dict, metric_to_dict, record_look
from analytics.proposals import ProposalOutcome, Withdrawal, propose_solved, withdraw_version
from analytics.stats import Comparison, Decision, Verdict
from trainer.manifest import MANIFEST_FILE, read_manifest
from trainer.mirror import GATE_FILE
from trainer.rollout_config import FULL_ROLLOUT_PERCENT, RolloutSettings
from trainer.rollout_errors import RolloutStateError
from trainer.router import RouteDecision, Router, RoutingTable
from trainer.versions import utc_now

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse
    from trainer.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "RolloutAction",
    "RolloutController",
    "RolloutDecision",
    "RolloutState",
    "RolloutStatus",
    "RolloutStore",
    "RouteDecision",
    "TrainingEvidence",
    "Router",
    "RoutingTable",
    "arm_conversations",
    "decide",
    "routing_table",
    "training_evidence",
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
    """One decision: the action, the state after it and why.

    ``proposals``: what the look proposed and held back (None when it proposed nothing
    because no type was solved or it rolled back); ``withdrawal``: a rollback's
    bookkeeping (None otherwise).
    """

    action: RolloutAction
    state: RolloutState
    reason: str
    proposals: ProposalOutcome | None = None
    withdrawal: Withdrawal | None = None


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
        """Write one decision with its evidence: the state, the reason, the comparison, and
        the proposals or the rollback's withdrawals when there are any."""
        state = decision.state
        evidence: dict[str, Any] = {
            "state": state.to_dict(),
            "reason": decision.reason,
            "comparison": comparison,
        }
        if decision.proposals is not None:
            evidence["proposals"] = decision.proposals.to_dict()
        if decision.withdrawal is not None:
            evidence["withdrawal"] = decision.withdrawal.to_dict()
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


MANIFEST_TRAINED_KEY = "trained_sample_ids"
"""The manifest field listing exactly the samples a version was trained on."""

MANIFEST_FAMILIES_KEY = "families"
"""The manifest field with the prompt families (id → prompts, sample ids, split)."""


@dataclass(frozen=True, slots=True)
class TrainingEvidence:
    """What a version's manifest says about its training, for proposals."""

    trained_sample_ids: list[str] | None = None
    families: Mapping[str, Mapping[str, Any]] | None = None
    claimed_types: frozenset[str] | None = None
    """The types the offline gate claimed (gate.json); None: an older version, no filter."""


def training_evidence(directory: Path) -> TrainingEvidence:
    """The trained ids and families of the dataset manifest in ``directory``.

    A missing manifest or field is None: without ``families`` nothing is proposed, and
    ``source_sample_ids`` (every pool id read) is never taken for the trained ids.
    """
    if not (directory / MANIFEST_FILE).is_file():
        return TrainingEvidence()
    manifest = read_manifest(directory)
    trained = manifest.get(MANIFEST_TRAINED_KEY)
    families = manifest.get(MANIFEST_FAMILIES_KEY)
    return TrainingEvidence(
        [str(i) for i in trained] if isinstance(trained, list) else None,
        families if isinstance(families, dict) else None,
        _claimed_types(directory / GATE_FILE),
    )


def claimed_only(
    solved: Mapping[str, Any], claimed: frozenset[str] | None, *, version: str
) -> dict[str, Any]:
    """The canary's solved types the offline gate claimed (``claimed`` None: all of them).

    A type the candidate did not fix on unseen prompts offline is not proposed as
    solved, whatever its canary rate did: its samples stay problems for the next cycle.
    """
    if claimed is None:
        return dict(solved)
    unclaimed = sorted(set(solved) - claimed)
    if unclaimed:
        logger.info(
            "%s: %s solved in the canary but not claimed by the offline gate: not proposed",
            version,
            ", ".join(unclaimed),
        )
    return {t: v for t, v in solved.items() if t in claimed}


def _claimed_types(gate_file: Path) -> frozenset[str] | None:
    """The gate's ``behaviour.claimed`` types, or None when the gate predates claims."""
    if not gate_file.is_file():
        return None
    behaviour = orjson.loads(gate_file.read_bytes()).get("behaviour")
    claimed = behaviour.get("claimed") if isinstance(behaviour, dict) else None
    return frozenset(str(t) for t in claimed) if isinstance(claimed, list) else None


class RolloutController:
    """One look at a running rollout: compare, decide, propose or withdraw, record, re-route.

    With a ``registry``, a version's trained ids and families come from its manifest
    (``registry.path(version)/manifest.json``) unless the caller passes them.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        router: Router,
        *,
        settings: RolloutSettings | None = None,
        registry: Registry | None = None,
    ) -> None:
        self._warehouse = warehouse
        self._router = router
        self._registry = registry
        self.settings = settings or router.settings
        self.store = RolloutStore(warehouse, self.settings)
        self._evidence: dict[str, TrainingEvidence] = {}

    def tick(
        self,
        version: str,
        *,
        trained_sample_ids: Collection[str] | None = None,
        families: Mapping[str, Mapping[str, Any]] | None = None,
        now: datetime | None = None,
    ) -> RolloutDecision:
        """Look at ``version``'s rollout once and act on it.

        ``trained_sample_ids`` and ``families`` (the manifest's fields) default to the
        registry's manifest of ``version``; without families no sample is proposed.
        """
        state = self.store.load(version)
        if state is None:
            msg = f"{version} has no rollout; start one with RolloutStore.start"
            raise RolloutStateError(msg)
        when = now or utc_now()
        self._router.flush()
        excluded = sorted(self.settings.allowlist)
        detailed = compare(
            self._warehouse,
            new=state.version,
            prev=state.parent,
            split=state.share_percent(self.settings) / FULL_ROLLOUT_PERCENT,
            since=state.step_started_at,
            excluded_users=excluded,
        )
        comparison = detailed.comparison
        record_look(self._warehouse, detailed, new=state.version, prev=state.parent, ts=when)
        logger.info(
            "look at %s vs %s: %s (%s)",
            state.version, state.parent, comparison.decision, comparison.reason,
        )  # fmt: skip
        decision = decide(comparison, state, self.settings, now=when)
        decision = replace(decision, state=replace(decision.state, seq=state.seq + 1))
        if decision.action is RolloutAction.ROLL_BACK:
            withdrawal = self.withdraw(version, reason=decision.reason, now=when)
            decision = replace(decision, withdrawal=withdrawal)
        else:
            started = detailed.steps[0].started_at if detailed.steps else state.step_started_at
            outcome = self._propose(
                version, comparison, started, when, trained_sample_ids, families
            )
            decision = replace(decision, proposals=outcome)
        payload = comparison_to_dict(detailed, new=state.version, prev=state.parent)
        self.store.record(decision, comparison=payload, now=when)
        self._router.update(routing_table(decision.state, self.settings))
        return decision

    def roll_back(
        self, version: str, *, reason: str, now: datetime | None = None
    ) -> RolloutDecision:
        """End ``version``'s running or held rollout by hand: roll back, withdraw, re-route."""
        state = self.store.load(version)
        if state is None:
            msg = f"{version} has no rollout to roll back"
            raise RolloutStateError(msg)
        if state.status in FINAL_STATUSES:
            msg = f"rollout of {version} is {state.status} already; nothing to roll back"
            raise RolloutStateError(msg)
        when = now or utc_now()
        rolled = replace(
            state, status=RolloutStatus.ROLLED_BACK, step_started_at=when, seq=state.seq + 1
        )
        withdrawal = self.withdraw(version, reason=reason, now=when)
        decision = RolloutDecision(RolloutAction.ROLL_BACK, rolled, reason, withdrawal=withdrawal)
        self.store.record(decision, now=when)
        self._router.update(routing_table(rolled, self.settings))
        return decision

    def withdraw(self, version: str, *, reason: str, now: datetime | None = None) -> Withdrawal:
        """A rollback's bookkeeping for ``version`` (idempotent)."""
        return withdraw_version(
            self._warehouse,
            version=version,
            actor=self.settings.actor,
            reason=reason,
            ts=now or utc_now(),
        )

    def _propose(
        self,
        version: str,
        comparison: Comparison,
        started: datetime,
        when: datetime,
        trained_sample_ids: Collection[str] | None,
        families: Mapping[str, Mapping[str, Any]] | None,
    ) -> ProposalOutcome | None:
        solved = {
            name: metric_to_dict(result)
            for name, result in comparison.targets.items()
            if result.verdict is Verdict.SOLVED_CANDIDATE
        }
        manifest = self.training_evidence(version)
        solved = claimed_only(solved, manifest.claimed_types, version=version)
        if not solved:
            return None
        return propose_solved(
            self._warehouse,
            version=version,
            verdicts=solved,
            actor=self.settings.actor,
            ts=when,
            trained_sample_ids=(
                manifest.trained_sample_ids if trained_sample_ids is None else trained_sample_ids
            ),
            families=manifest.families if families is None else families,
            since=started,
            excluded_users=sorted(self.settings.allowlist),
            rule=self.settings.family_rule(),
        )

    def training_evidence(self, version: str) -> TrainingEvidence:
        """``version``'s manifest fields (read once); empty without a registry."""
        if self._registry is None:
            return TrainingEvidence()
        if version not in self._evidence:
            self._evidence[version] = training_evidence(self._registry.path(version))
        return self._evidence[version]
