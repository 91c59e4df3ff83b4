"""Experiment health: sample-ratio mismatch and users exposed to both versions.

Why: a verdict compares like with like only if the router split users as configured and
kept each user on one version. A sample-ratio mismatch (Fabijan et al., "Diagnosing
Sample Ratio Mismatch in Online Controlled Experiments", KDD 2019) means assignment or
logging is broken in a way that usually biases the rates; users who saw both versions
contaminate both arms. Either one puts the rollout on hold until fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special  # type: ignore[import-untyped]

from analytics.stats.config import ComparisonSettings
from analytics.stats.exceptions import StatsInputError

_SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Outcome of the health checks; ``healthy`` is False if any reason is listed."""

    srm_p_value: float
    multiple_exposure_share: float
    reasons: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.reasons


def srm_p_value(users_per_arm: Sequence[int], expected_shares: Sequence[float]) -> float:
    """χ² goodness-of-fit p-value of user counts per arm against the configured split.

    χ² = Σ_k (O_k − E_k)² / E_k with E_k = share_k · Σ O, on K − 1 degrees of freedom.
    """
    observed = np.asarray(users_per_arm, dtype=np.float64)
    shares = np.asarray(expected_shares, dtype=np.float64)
    if observed.shape != shares.shape or observed.ndim != 1 or observed.size < 2:
        msg = "users_per_arm and expected_shares need one entry per arm, two arms at least"
        raise StatsInputError(msg)
    if np.any(observed < 0) or np.any(shares <= 0) or abs(shares.sum() - 1) > _SHARE_TOLERANCE:
        msg = f"need counts >= 0 and shares > 0 summing to 1, got {observed}, {shares}"
        raise StatsInputError(msg)
    total = observed.sum()
    if total == 0:
        return 1.0
    expected = shares * total
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return float(special.chdtrc(observed.size - 1, statistic))


def multiple_exposure_share(users_in_both: int, users_total: int) -> float:
    """Share of distinct users that were served by both versions."""
    if users_in_both < 0 or users_total < users_in_both:
        msg = f"need 0 <= users_in_both <= users_total, got {users_in_both}, {users_total}"
        raise StatsInputError(msg)
    return users_in_both / users_total if users_total else 0.0


def check_health(
    users_per_arm: Sequence[int],
    expected_shares: Sequence[float],
    *,
    users_in_both: int,
    settings: ComparisonSettings | None = None,
) -> HealthCheck:
    """SRM (p below ``srm_p_threshold``) and multiple exposure (share above the maximum).

    ``users_per_arm`` counts users by the arm of their first exposure; ``users_in_both``
    those later served by the other arm too (so the total of distinct users is the sum).
    """
    cfg = settings or ComparisonSettings()
    p = srm_p_value(users_per_arm, expected_shares)
    share = multiple_exposure_share(users_in_both, int(sum(users_per_arm)))
    reasons: list[str] = []
    if p < cfg.srm_p_threshold:
        reasons.append(
            f"sample ratio mismatch: users {list(users_per_arm)} against split "
            f"{list(expected_shares)} (chi-square p = {p:.2g} < {cfg.srm_p_threshold})"
        )
    if share > cfg.max_multiple_exposure_share:
        reasons.append(
            f"{share:.2%} of users saw both versions "
            f"(> {cfg.max_multiple_exposure_share:.2%}); check sticky routing"
        )
    return HealthCheck(p, share, tuple(reasons))
