"""The behavioural gate's default judge: the demo's QA reviewer rules (trainer.judging.Judge).

The gate asks which problem types a generated reply shows. This judge looks up the
scenario item whose prompt opened the conversation (over every family and every
phrasing, evaluation families included) and returns the reviewer's problem types
for that one reply; a conversation that opens with an unknown question gets None
(not judged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from loraloop.simulation.config import JudgeRules
from loraloop.simulation.reviewer import problem_types_of
from loraloop.simulation.scenario import PHRASINGS_PER_FAMILY, ScenarioItem, scenario_items


class ScenarioJudge:
    """Judges replies to the scenario's prompts with :func:`problem_types_of`."""

    def __init__(
        self, rules: JudgeRules | None = None, items: Sequence[ScenarioItem] | None = None
    ) -> None:
        """``rules`` default to ``JudgeRules()``, ``items`` to the whole scenario."""
        self.rules = rules if rules is not None else JudgeRules()
        chosen = items if items is not None else scenario_items(PHRASINGS_PER_FAMILY)
        self._by_prompt = {item.text: item for item in chosen}

    def item(self, messages: Sequence[Mapping[str, str]]) -> ScenarioItem | None:
        """The item whose prompt is the conversation's first user message."""
        first = next((m.get("content", "") for m in messages if m.get("role") == "user"), None)
        return None if first is None else self._by_prompt.get(first.strip())

    def problems(self, messages: Sequence[Mapping[str, str]], reply: str) -> frozenset[str] | None:
        """The problem types ``reply`` shows; None when the question is not the scenario's."""
        item = self.item(messages)
        if item is None:
            return None
        return frozenset(problem_types_of(item, [reply], self.rules))
