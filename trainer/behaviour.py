"""The behavioural verdict: does the candidate fix unseen problem prompts, baseline intact?

Pure logic over judged prompts, no model. Each prompt was answered by the parent
and by the candidate and both replies were judged (:mod:`trainer.judging`). An
unseen problem prompt (a held-out family's or an evaluation-set phrasing) passes
for its type ``T`` when ``T`` is not among the problems the judge found; it
passes as a whole (the pooled set) when none of its own types was found. A
baseline prompt passes when the judge found no problem at all. A prompt the
judge could not judge for either version is skipped.

:func:`tally` turns judged prompts into paired counts; :func:`decide` is the rule:

- at least one targeted type (a problem type of the train split) has at least
  ``min_unseen_prompts`` judged unseen prompts; such a type is *decisive*;
- each decisive type is *claimed* when it improves: candidate pass rate − parent
  pass rate ≥ ``min_pass_rate_gain`` and its exact one-sided McNemar p passes
  Holm's step-down at ``behaviour_alpha`` over the decisive types (so the chance
  of claiming any type that did not improve stays ≤ ``behaviour_alpha``, however
  many types a cycle trains). At least one type must be claimed. A decisive type
  that is not claimed does not fail the gate unless it got significantly worse;
  it is reported as not claimed, and its samples are never proposed as solved
  by this version (:func:`trainer.rollout.training_evidence` reads ``claimed``);
- the pooled unseen prompts improve (the same gain and a McNemar p ≤
  ``behaviour_alpha``): the claimed types must not be bought with the others;
- the baseline does not regress: parent − candidate pass rate ≤
  ``max_baseline_drop`` and McNemar-worse p > ``behaviour_alpha`` unless it broke
  no more prompts than it fixed (skipped, with a note, when no baseline prompt was
  judged). ``behaviour_alpha = 1`` thus turns every significance bar off.

Types with too few prompts, or not trained this cycle, are reported, not decisive.
A cycle that trained no problem type fails: a regression-only gate ships nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, Field

from trainer.config import GateConfig
from trainer.judging import PairedCounts, mcnemar_improved_p, mcnemar_worse_p

REPLY_CHARS = 200
"""Replies are kept in the gate's per-prompt records up to this many characters."""

_EPS = 1e-9  # rates are ratios of small integers: compare them with a hair of slack


class Source(StrEnum):
    """Where a gate prompt comes from."""

    HELDOUT = "heldout"
    EVALUATION = "evaluation"
    BASELINE = "baseline"


@dataclass(frozen=True)
class GatePrompt:
    """A conversation to answer (ending with a user turn), its family and the types it tests."""

    messages: Sequence[Mapping[str, str]]
    family: str
    problem_types: tuple[str, ...]
    source: Source


@dataclass(frozen=True)
class Judged:
    """One prompt, both replies and what the judge found in each (None: not judgeable)."""

    prompt: GatePrompt
    parent_reply: str
    candidate_reply: str
    parent_problems: frozenset[str] | None
    candidate_problems: frozenset[str] | None


def passes(problems: frozenset[str] | None, types: Iterable[str]) -> bool | None:
    """A prompt that tests ``types`` passes when none of them was found (no types: none at all)."""
    if problems is None:
        return None
    wanted = set(types)
    return not (problems & wanted) if wanted else not problems


class PairedStats(BaseModel):
    """Paired counts over prompts judged with both versions, and the improvement test."""

    prompts: int
    fixed: int
    broken: int
    unchanged: int
    parent_pass_rate: float | None
    candidate_pass_rate: float | None
    p_value: float = Field(description="Exact one-sided McNemar p that the candidate improved.")

    @classmethod
    def of(cls, counts: PairedCounts) -> PairedStats:
        """The stats of ``counts``."""
        return cls(
            prompts=counts.prompts,
            fixed=counts.fixed,
            broken=counts.broken,
            unchanged=counts.unchanged,
            parent_pass_rate=counts.parent_pass_rate,
            candidate_pass_rate=counts.candidate_pass_rate,
            p_value=mcnemar_improved_p(counts.fixed, counts.broken),
        )


class BaselineStats(PairedStats):
    """Paired stats of the baseline prompts, with the test that the candidate got worse."""

    p_worse: float = Field(description="Exact one-sided McNemar p that the candidate regressed.")

    @classmethod
    def of(cls, counts: PairedCounts) -> BaselineStats:
        """The stats of ``counts``."""
        paired = PairedStats.of(counts)
        return cls(**paired.model_dump(), p_worse=mcnemar_worse_p(counts.fixed, counts.broken))


class PromptRecord(BaseModel):
    """One prompt's outcome in gate.json (replies truncated to :data:`REPLY_CHARS`)."""

    family: str
    problem_types: list[str]
    source: Source
    parent_pass: bool | None
    candidate_pass: bool | None
    parent_problems: list[str] | None
    candidate_problems: list[str] | None
    parent_reply: str
    candidate_reply: str

    @classmethod
    def of(cls, item: Judged) -> PromptRecord:
        """The record of a judged prompt."""
        prompt = item.prompt
        types = () if prompt.source is Source.BASELINE else prompt.problem_types
        return cls(
            family=prompt.family,
            problem_types=list(prompt.problem_types),
            source=prompt.source,
            parent_pass=passes(item.parent_problems, types),
            candidate_pass=passes(item.candidate_problems, types),
            parent_problems=_sorted(item.parent_problems),
            candidate_problems=_sorted(item.candidate_problems),
            parent_reply=item.parent_reply[:REPLY_CHARS],
            candidate_reply=item.candidate_reply[:REPLY_CHARS],
        )


def _sorted(problems: frozenset[str] | None) -> list[str] | None:
    return None if problems is None else sorted(problems)


@dataclass(frozen=True)
class BehaviourCounts:
    """What :func:`decide` needs: paired counts per type, pooled and baseline."""

    targeted: frozenset[str]
    per_type: Mapping[str, PairedCounts] = field(default_factory=dict)
    pooled: PairedCounts = PairedCounts()
    baseline: PairedCounts = PairedCounts()
    skipped: int = 0


def tally(judged: Iterable[Judged], *, targeted: Iterable[str]) -> BehaviourCounts:
    """Paired counts of judged prompts; a prompt not judged for both versions is skipped."""
    per_type: dict[str, PairedCounts] = {}
    pooled, baseline, skipped = PairedCounts(), PairedCounts(), 0
    for item in judged:
        if item.parent_problems is None or item.candidate_problems is None:
            skipped += 1
            continue
        old, new = item.parent_problems, item.candidate_problems
        if item.prompt.source is Source.BASELINE:
            baseline = baseline.add(not old, not new)
            continue
        types = item.prompt.problem_types
        pooled = pooled.add(bool(passes(old, types)), bool(passes(new, types)))
        for problem_type in set(types):
            counts = per_type.get(problem_type, PairedCounts())
            per_type[problem_type] = counts.add(problem_type not in old, problem_type not in new)
    return BehaviourCounts(frozenset(targeted), per_type, pooled, baseline, skipped)


class Verdict(BaseModel):
    """The behavioural verdict: passed, failures first then notes, decisive and claimed types."""

    passed: bool
    reasons: list[str]
    decisive: list[str]
    claimed: list[str] = Field(
        default_factory=list,
        description="Decisive types the candidate fixed on unseen prompts (Holm at alpha).",
    )


def decisive_types(counts: BehaviourCounts, config: GateConfig) -> list[str]:
    """Targeted types with enough judged unseen prompts to decide on."""
    return sorted(
        t
        for t, c in counts.per_type.items()
        if t in counts.targeted and c.prompts >= config.min_unseen_prompts
    )


def _improvement(
    name: str, counts: PairedCounts, config: GateConfig, alpha: float | None = None
) -> tuple[bool, str]:
    """Whether ``counts`` show the required gain at level ``alpha`` (default: the config's)."""
    level = config.behaviour_alpha if alpha is None else alpha
    stats = PairedStats.of(counts)
    gain = (counts.fixed - counts.broken) / counts.prompts if counts.prompts else 0.0
    enough = counts.fixed - counts.broken >= config.min_pass_rate_gain * counts.prompts - _EPS
    significant = stats.p_value <= level + _EPS
    old, new = stats.parent_pass_rate or 0, stats.candidate_pass_rate or 0
    text = (
        f"{name}: pass rate {old:.0%} -> {new:.0%} over {counts.prompts} unseen prompts "
        f"(fixed {counts.fixed}, broken {counts.broken}, gain {gain:+.0%}, "
        f"McNemar p={stats.p_value:.3g})"
    )
    if enough and significant:
        return True, f"{text}: improved"
    why = [f"gain below {config.min_pass_rate_gain:.0%}"] if not enough else []
    why += [] if significant else [f"p > {level:.3g}"]
    return False, f"{text}: not improved ({', '.join(why)})"


def holm_levels(p_values: Mapping[str, float], alpha: float) -> dict[str, float]:
    """Each name's Holm step-down level: ``alpha / (k - rank)`` in ascending p order.

    A name passes when its p is within its level *and* every name before it passed;
    :func:`claim` applies the stop. Ties keep name order so the result is stable.
    """
    ordered = sorted(p_values, key=lambda name: (p_values[name], name))
    if alpha >= 1:
        return dict.fromkeys(ordered, 1.0)  # alpha = 1: the significance bar is off
    return {name: alpha / (len(ordered) - rank) for rank, name in enumerate(ordered)}


def claim(
    counts: BehaviourCounts, decisive: Sequence[str], config: GateConfig
) -> tuple[list[str], list[tuple[bool, str]]]:
    """The decisive types claimed under Holm's step-down, and one check per type."""
    p_values = {
        t: mcnemar_improved_p(counts.per_type[t].fixed, counts.per_type[t].broken) for t in decisive
    }
    levels = holm_levels(p_values, config.behaviour_alpha)
    significant: set[str] = set()
    for problem_type in sorted(decisive, key=lambda t: (p_values[t], t)):
        if p_values[problem_type] > levels[problem_type] + _EPS:
            break  # Holm stops at the first p above its level: no larger p is significant
        significant.add(problem_type)
    claimed: list[str] = []
    checks: list[tuple[bool, str]] = []
    for problem_type in decisive:
        ok, text = _improvement(
            problem_type, counts.per_type[problem_type], config, levels[problem_type]
        )
        if ok and problem_type not in significant:
            ok = False
            text = text.removesuffix(": improved") + ": not improved (Holm stopped at a smaller p)"
        claimed += [problem_type] if ok else []
        checks.append((ok, text if ok else f"{text}; not claimed"))
    return sorted(claimed), checks


def _worse(name: str, counts: PairedCounts, config: GateConfig) -> str | None:
    """Why a decisive type that was not claimed fails the gate: significantly worse; or None."""
    p_worse = mcnemar_worse_p(counts.fixed, counts.broken)
    if counts.broken > counts.fixed and p_worse <= config.behaviour_alpha:
        return (
            f"{name}: broken {counts.broken}, fixed {counts.fixed} of {counts.prompts} unseen "
            f"prompts (McNemar-worse p={p_worse:.3g}): significantly worse"
        )
    return None


def _baseline(counts: PairedCounts, config: GateConfig) -> tuple[bool, str]:
    """Whether the baseline prompts stayed non-inferior, and why."""
    if not counts.prompts:
        return True, "no judged baseline regression prompts: baseline check skipped"
    stats = BaselineStats.of(counts)
    drop_ok = counts.broken - counts.fixed <= config.max_baseline_drop * counts.prompts + _EPS
    # Breaking no more than it fixes is never significantly worse (p_worse >= 1/2 anyway).
    not_worse = counts.broken <= counts.fixed or stats.p_worse > config.behaviour_alpha
    text = (
        f"baseline: pass rate {stats.parent_pass_rate or 0:.0%} -> "
        f"{stats.candidate_pass_rate or 0:.0%} over {counts.prompts} prompts (fixed "
        f"{counts.fixed}, broken {counts.broken}, McNemar-worse p={stats.p_worse:.3g})"
    )
    if drop_ok and not_worse:
        return True, f"{text}: non-inferior"
    why = [] if drop_ok else [f"drop above {config.max_baseline_drop:.0%}"]
    why += [] if not_worse else [f"significantly worse at {config.behaviour_alpha:g}"]
    return False, f"{text}: regressed ({', '.join(why)})"


def decide(counts: BehaviourCounts, config: GateConfig) -> Verdict:
    """The gate rule over paired counts (see the module docstring)."""
    failures: list[str] = []
    notes: list[str] = []
    decisive = decisive_types(counts, config)
    for problem_type in sorted(set(counts.per_type) - set(decisive)):
        n = counts.per_type[problem_type].prompts
        why = "not trained this cycle" if problem_type not in counts.targeted else (
            f"only {n} judged unseen prompts (< {config.min_unseen_prompts})"
        )  # fmt: skip
        notes.append(f"{problem_type}: {why}: reported, not decisive")
    if not counts.targeted:
        failures.append(
            "no problem type was trained this cycle: a regression-only gate cannot ship"
        )
    elif not decisive:
        failures.append(
            f"no trained problem type ({', '.join(sorted(counts.targeted))}) has "
            f"{config.min_unseen_prompts} or more judged unseen prompts: nothing shows the "
            "problems were learned beyond the training prompts"
        )
    claimed, type_checks = claim(counts, decisive, config)
    for _ok, text in type_checks:
        notes.append(text)
    for problem_type in decisive:
        if problem_type not in claimed:
            worse = _worse(problem_type, counts.per_type[problem_type], config)
            failures += [worse] if worse else []
    if decisive and not claimed:
        failures.append(
            f"no decisive type ({', '.join(decisive)}) improved on unseen prompts: "
            "nothing is fixed beyond the training prompts"
        )
    checks = [_improvement("pooled", counts.pooled, config)] if decisive else []
    checks.append(_baseline(counts.baseline, config))
    for ok, text in checks:
        (notes if ok else failures).append(text)
    if counts.skipped:
        notes.append(f"{counts.skipped} prompts the judge could not judge were skipped")
    return Verdict(
        passed=not failures, reasons=failures + notes, decisive=decisive, claimed=claimed
    )


class BehaviourReport(BaseModel):
    """The ``behaviour`` section of gate.json."""

    paired: dict[str, PairedStats]
    pooled: PairedStats
    baseline: BaselineStats
    skipped: int
    targeted: list[str]
    decisive: list[str]
    claimed: list[str] = Field(default_factory=list)
    prompts: list[PromptRecord]


def report(judged: Sequence[Judged], counts: BehaviourCounts, verdict: Verdict) -> BehaviourReport:
    """The gate.json section for these prompts, counts and verdict."""
    return BehaviourReport(
        paired={t: PairedStats.of(c) for t, c in sorted(counts.per_type.items())},
        pooled=PairedStats.of(counts.pooled),
        baseline=BaselineStats.of(counts.baseline),
        skipped=counts.skipped,
        targeted=sorted(counts.targeted),
        decisive=verdict.decisive,
        claimed=verdict.claimed,
        prompts=[PromptRecord.of(item) for item in judged],
    )
