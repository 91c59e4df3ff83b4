"""``evolve`` behaves like ``dataclasses.replace`` on the hot-path states."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.evolve import evolve
from detectors.state import ConversationState
from streams.rollup import ConversationRollup


@given(user_turns=st.integers(0, 10_000), model=st.none() | st.text(max_size=8))
def test_matches_replace_on_conversation_state(user_turns: int, model: str | None) -> None:
    state = ConversationState("c1", user_id="u1", fired={"complaint": 0.5})
    changes = {"user_turns": user_turns, "model_version": model}
    assert evolve(state, **changes) == dataclasses.replace(state, **changes)


def test_leaves_the_original_untouched_and_keeps_the_type() -> None:
    rollup = ConversationRollup(turns=2)
    updated = evolve(rollup, turns=3, handoff=True)
    assert type(updated) is ConversationRollup
    assert (rollup.turns, rollup.handoff) == (2, False)
    assert (updated.turns, updated.handoff, updated.events) == (3, True, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        updated.turns = 4  # type: ignore[misc]


def test_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="no field 'turnz'"):
        evolve(ConversationRollup(), turnz=1)


def test_dataclass_with_post_init_is_refused() -> None:
    @dataclass(frozen=True)
    class Checked:
        value: int
        extra: list[int] = field(default_factory=list)

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError

    with pytest.raises(TypeError, match="__post_init__"):
        evolve(Checked(1), value=-1)
