"""Judges for the gate tests, loaded by path (``tests.unit.trainer.fake_judge:taught``).

They judge the prompts of :func:`tests.trainer_fixtures.make_pool`: a problem
prompt ("Tell me about …") shows both problem types unless the reply opens like
the corrected training targets or carries one of their phrases; a baseline prompt
("How much is …") is always fine; any other conversation cannot be judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tests.trainer_fixtures import PROBLEM_TYPES

#: Word stems of the corrected replies of the fixture's problem samples (a tiny model
#: trained for seconds spells them approximately).
TAUGHT = ("let me", "cannot", "promis", "first, then")
#: How the corrected replies open ("Let me answer …", "I cannot promise …").
OPENINGS = ("let", "i can")


class MarkerJudge:
    """Passes a problem prompt when the reply opens with one of ``openings`` or
    contains one of ``markers``."""

    def __init__(self, markers: Sequence[str], openings: Sequence[str] = ()) -> None:
        self.markers, self.openings = tuple(markers), tuple(openings)

    def problems(self, messages: Sequence[Mapping[str, str]], reply: str) -> frozenset[str] | None:
        prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
        if prompt.startswith("How much is"):
            return frozenset()
        if not prompt.startswith("Tell me about"):
            return None
        text = reply.lower()
        if text.startswith(self.openings) or any(marker in text for marker in self.markers):
            return frozenset()
        return frozenset(PROBLEM_TYPES)


def taught() -> MarkerJudge:
    """Passes replies that say what the training targets teach."""
    return MarkerJudge(TAUGHT, OPENINGS)


def never() -> MarkerJudge:
    """Never passes a problem prompt: no candidate can improve."""
    return MarkerJudge(())


def not_a_judge() -> object:
    """A factory whose product has no ``problems`` method."""
    return object()


class _Always:
    """Finds no problem in any reply of any conversation."""

    def problems(self, messages: Sequence[Mapping[str, str]], reply: str) -> frozenset[str]:
        del messages, reply
        return frozenset()


def always() -> _Always:
    """Passes everything: with a bar-less gate config, a plumbing-only gate."""
    return _Always()
