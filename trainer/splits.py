"""Deterministic, rotating draws of whole prompt families for the gate.

A family (see :mod:`trainer.families`) is held out or trained as a whole, so no
held-out prompt is trained under a paraphrase. Its rank in every draw is the
sha256 of ``seed:rotation:family_id``: the same pool, seed and rotation always
draw the same families, independent of input order, and the next cycle (the
next ``rotation``) draws others.

- Held-out problem families are drawn per problem type (a family of several
  types counts toward each): none when the type has one family, at least one
  when it has two or more, ``heldout_fraction`` of its families otherwise, and
  never so many that a type it also carries keeps no family to train on.
- Baseline regression families are drawn among the families that hold baseline
  samples only, ``baseline_eval_fraction`` of them (at least one of two or
  more), skipping those that would bring the split past ``baseline_eval_max``
  samples.
- An evaluation family (one that holds an evaluation-set prompt) is never drawn:
  its pool samples are put aside, neither trained nor held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SPLIT_TRAIN = "train"
SPLIT_HELDOUT = "heldout_problem"
SPLIT_BASELINE = "baseline_regression"
SPLIT_EVALUATION = "evaluation"
#: The splits a dataset row can have, in row order (evaluation samples are not rows).
SPLITS: tuple[str, ...] = (SPLIT_TRAIN, SPLIT_HELDOUT, SPLIT_BASELINE)


@dataclass(frozen=True)
class Family:
    """One prompt family of a dataset: its samples and what they are."""

    family_id: str
    sample_ids: tuple[str, ...] = ()
    problem_types: frozenset[str] = field(default_factory=frozenset)
    has_problem: bool = False
    evaluation: bool = False


def draw_rank(seed: int, rotation: int, family_id: str) -> int:
    """The family's position in this rotation's draws (lower is drawn first)."""
    digest = hashlib.sha256(f"{seed}:{rotation}:{family_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def draw_count(population: int, fraction: float, *, at_most: int | None = None) -> int:
    """How many of ``population`` to hold out: round(fraction·n), ≥ 1 when n ≥ 2, < n."""
    if population < 2 or fraction <= 0:
        return 0
    count = max(1, round(fraction * population))
    count = min(count, population - 1)
    return count if at_most is None else min(count, at_most)


def _ranked(family_ids: Iterable[str], seed: int, rotation: int) -> list[str]:
    return sorted(set(family_ids), key=lambda fid: (draw_rank(seed, rotation, fid), fid))


def heldout_families(
    types_by_family: Mapping[str, Iterable[str]], *, fraction: float, seed: int, rotation: int
) -> set[str]:
    """Family ids held out so that each problem type keeps its own held-out share.

    Types are visited in sorted order; families already held out count toward a
    type's quota; a family is skipped when holding it would leave one of its
    types without a family to train on.
    """
    types = {fid: frozenset(ts) for fid, ts in types_by_family.items()}
    by_type: dict[str, list[str]] = {}
    for fid, family_types in types.items():
        for problem_type in family_types:
            by_type.setdefault(problem_type, []).append(fid)
    trained = {t: len(members) for t, members in by_type.items()}
    held: set[str] = set()
    for problem_type in sorted(by_type):
        members = _ranked(by_type[problem_type], seed, rotation)
        need = draw_count(len(members), fraction) - sum(1 for fid in members if fid in held)
        for fid in members:
            if need <= 0:
                break
            if fid in held or any(trained[t] <= 1 for t in types[fid]):
                continue
            held.add(fid)
            need -= 1
            for t in types[fid]:
                trained[t] -= 1
    return held


def regression_families(
    sizes: Mapping[str, int], *, fraction: float, at_most: int, seed: int, rotation: int
) -> set[str]:
    """Baseline family ids held out to check that the baseline does not regress.

    ``sizes`` maps each candidate family to its sample count; families are taken
    in rank order, skipping any that would bring the split past ``at_most``
    samples, until the count is reached.
    """
    drawn: set[str] = set()
    total, need = 0, draw_count(len(sizes), fraction)
    for fid in _ranked(sizes, seed, rotation):
        if len(drawn) == need:
            break
        if total + sizes[fid] <= at_most:
            drawn.add(fid)
            total += sizes[fid]
    return drawn


def family_splits(
    families: Sequence[Family],
    *,
    heldout_fraction: float,
    baseline_fraction: float,
    baseline_max: int,
    seed: int,
    rotation: int,
) -> dict[str, str]:
    """Family id → split (train, heldout_problem, baseline_regression or evaluation)."""
    splits = {f.family_id: SPLIT_EVALUATION if f.evaluation else SPLIT_TRAIN for f in families}
    drawable = [f for f in families if not f.evaluation and f.sample_ids]
    held = heldout_families(
        {f.family_id: f.problem_types for f in drawable if f.has_problem},
        fraction=heldout_fraction,
        seed=seed,
        rotation=rotation,
    )
    regression = regression_families(
        {f.family_id: len(f.sample_ids) for f in drawable if not f.has_problem},
        fraction=baseline_fraction,
        at_most=baseline_max,
        seed=seed,
        rotation=rotation,
    )
    splits.update(dict.fromkeys(held, SPLIT_HELDOUT))
    splits.update(dict.fromkeys(regression, SPLIT_BASELINE))
    return splits
