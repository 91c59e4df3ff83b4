"""Judges for the gate tests, loaded by path (``tests.unit.trainer.fake_judge:taught``).

They judge the prompts of :func:`tests.trainer_fixtures.make_pool`: a problem prompt
("Tell me about …") shows both problem types unless the reply carries a phrase
the corrected training targets teach; a baseline prompt ("How much is …") is always
fine; any other conversation cannot be judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tests.trainer_fixtures import PROBLEM_TYPES

#: Word stems of the corrected replies of the fixture's problem samples (a tiny model
#: trained for seconds spells them approximately).
TAUGHT = ("cannot", "promis", "question", "answer your")


class MarkerJudge:
    """Passes a problem prompt when the reply contains one of ``markers``."""

    def __init__(self, markers: Sequence[str]) -> None:
        self.markers = tuple(markers)

    def problems(self, messages: Sequence[Mapping[str, str]], reply: str) -> frozenset[str] | None:
        prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
        if prompt.startswith("How much is"):
            return frozenset()
        if not prompt.startswith("Tell me about"):
            return None
        if any(marker in reply.lower() for marker in self.markers):
            return frozenset()
        return frozenset(PROBLEM_TYPES)


def taught() -> MarkerJudge:
    """Passes replies that say what the training targets teach."""
    return MarkerJudge(TAUGHT)


def never() -> MarkerJudge:
    """Never passes a problem prompt: no candidate can improve."""
    return MarkerJudge(())


def not_a_judge() -> object:
    """A factory whose product has no ``problems`` method."""
    return object()
