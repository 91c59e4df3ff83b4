"""Deterministic held-out draws: per problem type, and a baseline regression set.

A sample's rank is the sha256 of ``seed:sample_id``, so the same pool and seed
always hold out the same samples, independent of input order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence


def draw_rank(seed: int, sample_id: str) -> int:
    """The sample's position in every deterministic draw (lower is drawn first)."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def draw_count(population: int, fraction: float, *, at_most: int | None = None) -> int:
    """How many of ``population`` to hold out: round(fraction·n), ≥ 1 when n ≥ 2, < n."""
    if population < 2 or fraction <= 0:
        return 0
    count = max(1, round(fraction * population))
    count = min(count, population - 1)
    return count if at_most is None else min(count, at_most)


def heldout_per_type(
    types_by_id: Mapping[str, Sequence[str]], *, fraction: float, seed: int
) -> set[str]:
    """Sample ids held out so that each problem type keeps its own held-out share.

    A sample with several types counts toward each; types are visited in sorted
    order and already held-out samples count toward a type's quota.
    """
    by_type: dict[str, list[str]] = {}
    for sample_id, types in types_by_id.items():
        for problem_type in set(types):
            by_type.setdefault(problem_type, []).append(sample_id)
    held: set[str] = set()
    for problem_type in sorted(by_type):
        members = sorted(by_type[problem_type], key=lambda sid: (draw_rank(seed, sid), sid))
        need = draw_count(len(members), fraction) - sum(1 for sid in members if sid in held)
        for sample_id in members:
            if need <= 0:
                break
            if sample_id not in held:
                held.add(sample_id)
                need -= 1
    return held


def draw_baseline(
    sample_ids: Iterable[str], *, fraction: float, at_most: int, seed: int
) -> set[str]:
    """Baseline sample ids held out to check that the baseline does not regress."""
    members = sorted(set(sample_ids), key=lambda sid: (draw_rank(seed, sid), sid))
    return set(members[: draw_count(len(members), fraction, at_most=at_most)])
