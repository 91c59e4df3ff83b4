"""Which moves the sample page offers a user, read from the lifecycle's graph and rules.

The page shows a button or a menu entry only for a move that
:func:`loraloop.lifecycle.validate_transition` (what every move of the console goes
through, :func:`analytics.pool.transition`) would let one of the user's roles make from
the sample's status, so no rule is restated here. The server still checks every move
when it is posted: what is offered is a convenience, not the check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from loraloop.lifecycle import (
    Action,
    ActorKind,
    Edge,
    Role,
    SampleStatus,
    TransitionRefused,
    allowed_moves,
    validate_transition,
)

MENU_ACTIONS: Final = (Action.DOWNWEIGHT, Action.DEMOTE, Action.RETIRE, Action.REOPEN)
"""Moves the page's move menu makes, each with a reason; labelling has the label form
and promotion the approve button (which cites the open proposal)."""

REASON_GIVEN: Final = "reason"
"""Stands for the reason the menu's form requires, when asking whether a move is allowed."""


def may_make(edge: Edge, roles: Iterable[Role]) -> bool:
    """Whether one of ``roles`` may perform ``edge`` (people act as humans, ``system`` as
    an automatic actor), a reason given."""
    for role in roles:
        kind = ActorKind.SYSTEM if role is Role.SYSTEM else ActorKind.HUMAN
        try:
            validate_transition(
                edge.source, edge.target, role=role, actor_kind=kind, reason=REASON_GIVEN
            )
        except TransitionRefused:
            continue
        return True
    return False


def menu_moves(status: SampleStatus, roles: Iterable[Role]) -> tuple[Edge, ...]:
    """The menu's moves from ``status`` that ``roles`` may make, in the graph's order."""
    held = tuple(roles)
    return tuple(e for e in allowed_moves(status) if e.action in MENU_ACTIONS and may_make(e, held))


def menu_target(status: SampleStatus, action: str) -> SampleStatus | None:
    """Where the menu's ``action`` moves a sample at ``status`` (None: no such move)."""
    for edge in allowed_moves(status):
        if edge.action in MENU_ACTIONS and edge.action.value == action:
            return edge.target
    return None


def promotion(status: SampleStatus, roles: Iterable[Role]) -> Edge | None:
    """The promotion from ``status`` (one tier up) when ``roles`` may perform it."""
    held = tuple(roles)
    for edge in allowed_moves(status):
        if edge.action is Action.PROMOTE and may_make(edge, held):
            return edge
    return None


def tier_name(status: SampleStatus) -> str:
    """A status as words: ``secondary_baseline`` → ``secondary baseline``."""
    return status.value.replace("_", " ")


def approve_label(edge: Edge) -> str:
    """The approve button's text, naming where the sample goes."""
    return f"Approve promotion to {tier_name(edge.target)}"
