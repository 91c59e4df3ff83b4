"""The closed-loop demo's pure parts: the scenario, the users' judge rules, the QA reviewer.

Nothing here does I/O or imports another layer: the demo driver
(``loraloop.cli.demo_run``) feeds the served model's replies in and publishes the
reactions these rules return. See docs/demo.md for the rules in words.
"""

from loraloop.simulation.config import JudgeRules, SimulationSettings
from loraloop.simulation.judge import Reaction, judge_reply
from loraloop.simulation.reviewer import Review, review
from loraloop.simulation.scenario import (
    Intent,
    ScenarioItem,
    evaluation_prompts,
    item_for_text,
    scenario_items,
)

__all__ = [
    "Intent",
    "JudgeRules",
    "Reaction",
    "Review",
    "ScenarioItem",
    "SimulationSettings",
    "evaluation_prompts",
    "item_for_text",
    "judge_reply",
    "review",
    "scenario_items",
]
