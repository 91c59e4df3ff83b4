"""The judge the behavioural gate asks: which problem types a generated reply shows.

A judge is any object with ``problems(messages, reply) -> frozenset[str] | None``:
the problem types the reply to the conversation ``messages`` (ending with the user
turn) shows, an empty set when it is fine, None when the judge cannot judge that
conversation (an unknown question). The deployment names its judge by import path
(``LORALOOP_GATE__JUDGE=package.module:factory``); the factory is called with no
argument. The default is the demo's simulated-user rules
(:mod:`loraloop.simulation.gate_judge`), loaded only when asked for.

Also the paired test the gate applies: the exact one-sided McNemar test over
prompts judged with both the parent and the candidate.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from trainer.exceptions import TrainerError


class JudgeError(TrainerError):
    """The configured judge could not be loaded: check ``LORALOOP_GATE__JUDGE``."""


@runtime_checkable
class Judge(Protocol):
    """Judges one reply; see the module docstring."""

    def problems(
        self, messages: Sequence[Mapping[str, str]], reply: str
    ) -> frozenset[str] | None: ...


def load_judge(path: str) -> Judge:
    """Import ``module:factory`` and call the factory; a clear error when it is not a judge."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        msg = f"judge {path!r} is not 'package.module:factory': set LORALOOP_GATE__JUDGE to one"
        raise JudgeError(msg)
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        msg = f"judge {path!r} could not be imported ({error}): check LORALOOP_GATE__JUDGE"
        raise JudgeError(msg) from error
    judge = factory()
    if not isinstance(judge, Judge):
        msg = f"judge {path!r} returned {type(judge).__name__}, which has no problems() method"
        raise JudgeError(msg)
    return judge


@dataclass(frozen=True, slots=True)
class PairedCounts:
    """Prompts judged with both versions: fixed (parent failed, candidate passed), broken
    (the reverse), and unchanged (both passed or both failed)."""

    fixed: int = 0
    broken: int = 0
    both_pass: int = 0
    both_fail: int = 0

    @property
    def prompts(self) -> int:
        """Prompts judged with both versions."""
        return self.fixed + self.broken + self.both_pass + self.both_fail

    @property
    def unchanged(self) -> int:
        """Prompts whose verdict did not change."""
        return self.both_pass + self.both_fail

    @property
    def parent_pass_rate(self) -> float | None:
        """Share of prompts the parent passed."""
        return (self.broken + self.both_pass) / self.prompts if self.prompts else None

    @property
    def candidate_pass_rate(self) -> float | None:
        """Share of prompts the candidate passed."""
        return (self.fixed + self.both_pass) / self.prompts if self.prompts else None

    def add(self, parent_passed: bool, candidate_passed: bool) -> PairedCounts:
        """These counts with one more prompt."""
        return PairedCounts(
            fixed=self.fixed + (candidate_passed and not parent_passed),
            broken=self.broken + (parent_passed and not candidate_passed),
            both_pass=self.both_pass + (parent_passed and candidate_passed),
            both_fail=self.both_fail + (not parent_passed and not candidate_passed),
        )


def mcnemar_improved_p(fixed: int, broken: int) -> float:
    """Exact one-sided McNemar p-value that the candidate fixes more prompts than it breaks.

    Under the null each discordant prompt is fixed or broken with probability ½:
    p = P(Binomial(fixed + broken, ½) ≥ fixed). 1.0 when nothing changed.
    """
    n = fixed + broken
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(fixed, n + 1)) / (1 << n))


def mcnemar_worse_p(fixed: int, broken: int) -> float:
    """Exact one-sided McNemar p-value that the candidate breaks more prompts than it fixes."""
    return mcnemar_improved_p(broken, fixed)
