"""The rollout service: canary every gated version, look at it on a schedule, act on it.

Closes the loop in the running system (design: Training cycle, steps 6–7). Each step:

- a running canary (registry status ``canary``) is looked at every ``tick_interval_s``
  by :class:`trainer.rollout.RolloutController` (compare, decide, propose the samples
  whose family is fixed, record with evidence, re-route), which reads the version's
  trained ids and families from its manifest in the registry; the registry follows the
  decision: ``complete`` makes the canary ``active`` and retires its parent,
  ``roll_back`` marks it ``rolled_back`` (the parent stays active) after withdrawing its
  pending proposals and flagging approvals made on its evidence for re-review,
  ``advance`` / ``stay`` / ``hold`` change no status;
- with no canary, the newest ``trained`` version whose gate passed is started next to its
  parent (status ``canary`` in the registry and ``model_versions``, a ``start`` row in
  ``rollouts``), provided the parent is still the active version; a version that can no
  longer be rolled out (a newer one exists, its parent was replaced) is retired;
- the shared :class:`~trainer.router.Router` is set to what the registry and the rollout
  log describe (:func:`trainer.serving.current_table`), so ``GET /v1/route`` serves the
  split at once;
- with serving replicas configured (an :class:`trainer.adapter_fleet.AdapterFleet`), a
  version starts only once every replica lists its adapter and its parent's, a running
  canary is looked at only while every replica still serves both (a replica that lost
  them is reloaded; one that cannot be makes a ``hold`` row in the rollout log), and the
  registry's versions routing no longer needs are unloaded after every step. What keeps a
  version from starting is the step's reason, logged, and in the stack's ``/health``.

Statuses are derived from the rollout log on every step (:meth:`RolloutService.settle`),
so a process killed between the rollout row and the status change is repaired on the
next step; a rollback recorded any other way (by hand, or by a process stopped before
its bookkeeping) gets the withdrawals when the status follows it.
:class:`RolloutService` is synchronous; :func:`serve_rollouts` runs it on the warehouse
thread (``Warehouse.run``) and never lets an error end the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from loraloop.settings import Settings
from trainer.adapter_fleet import AdapterFleet, FleetProblem
from trainer.mirror import set_status
from trainer.registry import Registry
from trainer.rollout import (
    FINAL_STATUSES,
    RolloutAction,
    RolloutController,
    RolloutDecision,
    RolloutState,
    RolloutStatus,
)
from trainer.rollout_config import RolloutSettings
from trainer.rollout_service_config import RolloutServiceSettings
from trainer.router import BASE_VERSION, Router
from trainer.service_config import TrainerSettings
from trainer.serving import current_table, router_from_warehouse
from trainer.versions import TRANSITIONS, VersionInfo, VersionStatus, utc_now

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

__all__ = [
    "RolloutService",
    "ServiceAction",
    "StepReport",
    "router_for_stack",
    "serve_rollouts",
]


class ServiceAction(StrEnum):
    """What one step of the service did."""

    IDLE = "idle"
    STARTED = "started"
    WAITING = "waiting"
    LOOKED = "looked"
    SETTLED = "settled"
    RETIRED = "retired"
    HELD = "held"
    """A serving replica cannot serve the version (or its parent) yet."""


@dataclass(frozen=True, slots=True)
class StepReport:
    """One step: what it did, to which version, the controller's decision if it looked."""

    action: ServiceAction
    version: str | None = None
    reason: str = ""
    decision: RolloutDecision | None = None


class RolloutService:
    """Starts, watches and finishes rollouts; blocking (call through ``Warehouse.run``)."""

    def __init__(
        self,
        warehouse: Warehouse,
        registry: Registry,
        router: Router,
        *,
        settings: RolloutServiceSettings | None = None,
        fleet: AdapterFleet | None = None,
    ) -> None:
        self._warehouse = warehouse
        self._registry = registry
        self._router = router
        self.settings = settings or RolloutServiceSettings()
        self.controller = RolloutController(warehouse, router, registry=registry)
        self.fleet = fleet
        self._last_look: dict[str, datetime] = {}
        self._held_for: dict[str, str] = {}
        """Per running canary, the replica problem last written to the rollout log."""
        self._wanted: set[str] = set()
        """The versions the replicas were last asked to serve."""

    @property
    def rollout_settings(self) -> RolloutSettings:
        return self.controller.settings

    def step(self, *, now: datetime | None = None) -> StepReport:
        """Watch the running canary, or start the next one; then refresh the router."""
        when = now or utc_now()
        versions = self._registry.versions()
        canaries = [v for v in versions if v.status is VersionStatus.CANARY]
        if canaries:
            report = self._hold_running(canaries[-1], when) or self._watch(canaries[-1], when)
        else:
            report = self._start_next(versions, when)
        self.refresh_router()
        self._unload_unrouted(versions)
        return report

    @property
    def serving_problem(self) -> str | None:
        """Why a replica cannot serve what routing needs (None: all can, or no replicas)."""
        if self.fleet is None or not self.fleet.problems:
            return None
        wanted = ", ".join(sorted(self._wanted - {BASE_VERSION})) or BASE_VERSION
        return f"{wanted} cannot be served: {_describe(self.fleet.problems)}"

    def _prepare(self, versions: set[str]) -> list[FleetProblem]:
        self._wanted = versions
        return [] if self.fleet is None else self.fleet.prepare(versions)

    def _hold_running(self, info: VersionInfo, when: datetime) -> StepReport | None:
        """A running canary a replica cannot serve: hold it (once per reason in the log)."""
        if self.fleet is None:  # no replicas: nothing to check, no extra query
            return None
        state = self.controller.store.load(info.name)
        if state is None or state.status in FINAL_STATUSES:
            return None
        problems = self._prepare({info.name, state.parent})
        if not problems:
            self._held_for.pop(info.name, None)
            return None
        reason = f"adapters not on every replica: {_describe(problems)}"
        if self._held_for.get(info.name) != reason:
            held = _held(state)
            self.controller.store.record(
                RolloutDecision(RolloutAction.HOLD, held, reason), now=when
            )
            self._held_for[info.name] = reason
        return StepReport(ServiceAction.HELD, info.name, reason)

    def _unload_unrouted(self, versions: list[VersionInfo]) -> None:
        """Unload from the replicas the registry's versions no route and no next start needs."""
        if self.fleet is None:
            return
        table = self._router.table
        keep = {table.stable, *([table.canary] if table.canary else [])}
        ready = [v.name for v in versions if v.status is VersionStatus.TRAINED and v.gate_passed]
        keep.update(ready[-1:])
        self.fleet.retire(keep, {v.name for v in versions})

    def refresh_router(self) -> None:
        """Serve what the registry mirror and the rollout log describe now."""
        table = current_table(self._warehouse, self.rollout_settings)
        if table != self._router.table:
            self._router.update(table)

    # ------------------------------------------------------------------ watching

    def _watch(self, info: VersionInfo, when: datetime) -> StepReport:
        state = self.controller.store.load(info.name)
        if state is None:  # status changed, then the process stopped before the start row
            return self._start(info, when)
        if state.status in FINAL_STATUSES:
            self.settle(state)
            return StepReport(ServiceAction.SETTLED, info.name, f"rollout {state.status}")
        last = self._last_look.get(info.name, state.step_started_at)
        due = last + timedelta(seconds=self.settings.tick_interval_s)
        if when < due:
            return StepReport(ServiceAction.WAITING, info.name, f"next look at {due.isoformat()}")
        decision = self.controller.tick(info.name, now=when)
        self._last_look[info.name] = when
        self.settle(decision.state)
        return StepReport(ServiceAction.LOOKED, info.name, decision.reason, decision)

    def settle(self, state: RolloutState) -> None:
        """Make the registry statuses agree with a rollout state (idempotent).

        A rollback not yet mirrored in the registry gets its bookkeeping first
        (:meth:`RolloutController.withdraw`; nothing new when the controller did it).
        """
        if state.status is RolloutStatus.COMPLETED:
            self._move(state.version, VersionStatus.ACTIVE)
            self._retire_parent(state.parent)
        elif state.status is RolloutStatus.ROLLED_BACK:
            if self._registry.get(state.version).status is not VersionStatus.ROLLED_BACK:
                self.controller.withdraw(
                    state.version, reason=f"rollout of {state.version} rolled back"
                )
            self._move(state.version, VersionStatus.ROLLED_BACK)
        else:
            self._move(state.version, VersionStatus.CANARY)

    def _retire_parent(self, parent: str) -> None:
        if parent == BASE_VERSION:
            return
        if self._registry.get(parent).status is VersionStatus.ACTIVE:
            self._move(parent, VersionStatus.RETIRED)

    def _move(self, name: str, target: VersionStatus) -> None:
        """Set ``name`` to ``target``, through ``canary`` when the direct move is not allowed."""
        current = self._registry.get(name).status
        if current is target:
            return
        if target not in TRANSITIONS[current] and VersionStatus.CANARY in TRANSITIONS[current]:
            set_status(self._warehouse, self._registry, name, VersionStatus.CANARY)
        set_status(self._warehouse, self._registry, name, target)
        logger.info("%s: %s -> %s", name, current, target)

    # ------------------------------------------------------------------ starting

    def _start_next(self, versions: list[VersionInfo], when: datetime) -> StepReport:
        ready = [v for v in versions if v.status is VersionStatus.TRAINED and v.gate_passed]
        if not ready:
            return StepReport(ServiceAction.IDLE)
        newest, older = ready[-1], ready[:-1]
        for info in older:
            self._retire(info, f"superseded by {newest.name}")
        active = self._registry.latest(VersionStatus.ACTIVE)
        stable = active.name if active is not None else BASE_VERSION
        parent = newest.parent or BASE_VERSION
        if parent != stable:
            reason = f"trained next to {parent}, but {stable} is active now"
            return self._retire(newest, reason)
        state = self.controller.store.load(newest.name)
        if state is not None:  # rolled out before (by hand?): only align the statuses
            self.settle(state)
            return StepReport(ServiceAction.SETTLED, newest.name, f"rollout {state.status}")
        return self._start(newest, when)

    def _start(self, info: VersionInfo, when: datetime) -> StepReport:
        parent = info.parent or BASE_VERSION
        problems = self._prepare({info.name, parent})
        if problems:  # no user is routed to a version a replica cannot serve
            reason = f"not started: adapters not on every replica: {_describe(problems)}"
            logger.warning("rollout of %s %s", info.name, reason)
            return StepReport(ServiceAction.HELD, info.name, reason)
        self._move(info.name, VersionStatus.CANARY)
        state = self.controller.store.start(info.name, parent, now=when)
        self._last_look[info.name] = when
        share = state.share_percent(self.rollout_settings)
        logger.info("rollout of %s next to %s started at %g %%", info.name, parent, share)
        return StepReport(
            ServiceAction.STARTED, info.name, f"canary at {share:g} % next to {parent}"
        )

    def _retire(self, info: VersionInfo, reason: str) -> StepReport:
        if not self.settings.retire_superseded:
            return StepReport(ServiceAction.IDLE, info.name, f"not rolled out: {reason}")
        logger.warning("retiring %s without a rollout: %s", info.name, reason)
        self._move(info.name, VersionStatus.RETIRED)
        return StepReport(ServiceAction.RETIRED, info.name, reason)


def _describe(problems: Sequence[FleetProblem]) -> str:
    return "; ".join(p.describe() for p in problems)


def _held(state: RolloutState) -> RolloutState:
    return replace(state, status=RolloutStatus.HELD, seq=state.seq + 1)


# ---------------------------------------------------------------------------- the stack

_ROUTERS: weakref.WeakKeyDictionary[Warehouse, Router] = weakref.WeakKeyDictionary()
_ROUTERS_LOCK = threading.Lock()


def router_for_stack(warehouse: Warehouse, settings: RolloutSettings | None = None) -> Router:
    """The one router of ``warehouse``'s stack, made on first use (blocking: one query).

    ``GET /v1/route`` and :func:`serve_rollouts` must share it: the service re-routes it
    and flushes the assignments it recorded before every look.
    """
    with _ROUTERS_LOCK:
        router = _ROUTERS.get(warehouse)
        if router is None:
            router = router_from_warehouse(warehouse, settings)
            _ROUTERS[warehouse] = router
        return router


def default_registry() -> Registry:
    """The registry the training service writes (``LORALOOP_TRAINER__REGISTRY_DIR``)."""
    return Registry(TrainerSettings().registry_root(Settings().data_dir))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def serve_rollouts(
    warehouse: Warehouse,
    settings: RolloutServiceSettings,
    router: Router,
    stop: asyncio.Event,
    *,
    registry: Registry | None = None,
    fleet: AdapterFleet | None = None,
    on_serving_problem: Callable[[str | None], None] | None = None,
) -> None:
    """Run :meth:`RolloutService.step` every ``poll_interval_s`` until ``stop`` is set.

    Every warehouse and registry call runs on the warehouse thread; a failing step is
    logged and retried at the next poll. ``registry`` defaults to the training service's
    (:func:`default_registry`). With ``settings.enabled`` false it only waits. After
    every step ``on_serving_problem`` hears :attr:`RolloutService.serving_problem` (for
    ``/health``).
    """
    if not settings.enabled:
        logger.info("rollout service disabled (LORALOOP_ROLLOUT_SERVICE__ENABLED=false)")
        await stop.wait()
        return
    service = RolloutService(
        warehouse, registry or default_registry(), router, settings=settings, fleet=fleet
    )
    while not stop.is_set():
        try:
            report = await warehouse.run(service.step)
        except Exception:  # a warehouse hiccup or a broken version: log, look again later
            logger.exception(
                "rollout service step failed; retrying in %ss", settings.poll_interval_s
            )
        else:
            if report.action is not ServiceAction.WAITING:
                logger.debug("rollout step: %s %s %s", report.action, report.version, report.reason)
            if on_serving_problem is not None:
                on_serving_problem(service.serving_problem)
        await _pause(stop, settings.poll_interval_s)
