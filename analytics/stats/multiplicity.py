"""False-discovery-rate control across problem types: Benjamini–Hochberg and e-BH.

Why: a cycle trains on several problem types and each is tested for "solved"; at level
α each, some type would look solved by chance. BH (Benjamini & Hochberg, JRSS B 1995)
controls the false discovery rate for independent or positively dependent p-values;
e-BH (Wang & Ramdas, "False discovery rate control with e-values", JRSS B 2022) does so
for e-values under any dependence, and the always-valid e-values stay valid at any look.
e-BH is BH applied to 1/e, so the two agree when p = 1/e.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from analytics.stats.exceptions import StatsInputError


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        msg = f"alpha must lie in (0, 1), got {alpha}"
        raise StatsInputError(msg)


def benjamini_hochberg(p_values: Sequence[float], *, alpha: float) -> list[bool]:
    """Which hypotheses BH rejects at FDR level α.

    With K hypotheses and sorted p_(1) ≤ … ≤ p_(K), k̂ = max{k : p_(k) ≤ α·k/K}; every
    hypothesis with p ≤ p_(k̂) is rejected, none if there is no such k.
    """
    _check_alpha(alpha)
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        msg = f"p-values must lie in [0, 1], got {p.tolist()}"
        raise StatsInputError(msg)
    k = p.size
    ordered = np.sort(p)
    passing = np.nonzero(ordered <= alpha * np.arange(1, k + 1) / k)[0]
    if passing.size == 0:
        return [False] * k
    threshold = ordered[passing[-1]]
    return [bool(v) for v in p <= threshold]


def e_benjamini_hochberg(e_values: Sequence[float], *, alpha: float) -> list[bool]:
    """Which hypotheses e-BH rejects at FDR level α.

    With K e-values sorted e_(1) ≥ … ≥ e_(K), k̂ = max{k : e_(k) ≥ K/(α·k)}; the k̂
    largest (every e ≥ e_(k̂)) are rejected. Valid under arbitrary dependence.
    """
    _check_alpha(alpha)
    e = np.asarray(e_values, dtype=np.float64)
    if e.size == 0:
        return []
    if np.any(np.isnan(e)) or np.any(e < 0):
        msg = f"e-values must be >= 0, got {e.tolist()}"
        raise StatsInputError(msg)
    k = e.size
    ordered = np.sort(e)[::-1]
    passing = np.nonzero(ordered * alpha * np.arange(1, k + 1) >= k)[0]
    if passing.size == 0:
        return [False] * k
    threshold = ordered[passing[-1]]
    return [bool(v) for v in e >= threshold]


def p_value_from_e_value(e: float) -> float:
    """The anytime-valid p-value min(1, 1/e) (Markov/Ville)."""
    if math.isnan(e) or e < 0:
        msg = f"an e-value must be >= 0, got {e}"
        raise StatsInputError(msg)
    return 1.0 if e <= 1 else 1 / e
