"""An always-valid test on event counts that holds at any sample size: the beta-binomial mixture.

Why: the normal-mixture bounds (``sequential``) are asymptotic. With few events in an arm
(a 1 % canary has a handful of problem conversations for days) the normal approximation
fails in both directions: an arm with 0 events has variance 0 and looks infinitely
precise, and a skewed count crosses a normal boundary far more often than α. Counts
themselves allow an exact test.

With conversations arriving in both arms and events (conversations with the problem)
rare and independent, each event falls in the new arm with probability
θ = λ_new·N_new / (λ_new·N_new + λ_prev·N_prev) given the conversations served (the
Poisson conditioning argument behind the exact two-sample rate test). The hypothesis
"λ_new = q·λ_prev" is θ = θ0 = q·N_new/(q·N_new + N_prev), so the sequence of events is
a sequence of Bernoulli(θ) trials and the beta mixture of likelihood ratios

    M_k = ∫_{θ > θ0} Π_j (θ/θ0)^{x_j} ((1 − θ)/(1 − θ0))^{1 − x_j} dBeta(θ; a, b) / P(θ > θ0)

(the prior truncated to the alternative side) is a non-negative supermartingale under
every θ ≤ θ0, so P(sup_k M_k ≥ 1/α) ≤ α by Ville's inequality (Robbins 1970; Howard et
al. 2021 §3): valid at every look and every k, no asymptotics. The prior Beta(c·θ0,
c·(1 − θ0)) is centred on the null with c tuned like the normal mixture, so the test is
most powerful near ``target_events`` events.

Steps (strata) are disjoint in time: the product of their e-values is again an e-value.
The test assumes independent conversations; user clustering makes counts overdispersed,
which the clustered normal bound handles. The verdicts therefore need both (the minimum of
two e-values is an e-value): small samples are guarded by the exact test, clustering by
the delta-method variance.
"""

from __future__ import annotations

import math
from enum import StrEnum

from scipy import special  # type: ignore[import-untyped]

from analytics.stats.exceptions import StatsInputError

_MAX_LOG_E = 700.0


class CountSide(StrEnum):
    """The alternative: the new arm's share of events above or below θ0."""

    GREATER = "greater"
    LESS = "less"


def prior_strength(*, alpha: float, target_events: float) -> float:
    """c of the Beta(c·θ0, c·(1 − θ0)) prior: prior variance ≈ θ0(1 − θ0)·ρ² at the target.

    ρ² = (−2 log α + log(1 − 2 log α))/n* is the normal mixture's tuning (``sequential``);
    the beta prior with the same spread has c + 1 = 1/ρ². At least 1.
    """
    if not 0 < alpha < 1 or target_events <= 0:
        msg = f"need alpha in (0, 1) and target_events > 0, got {alpha}, {target_events}"
        raise StatsInputError(msg)
    two_log = -2 * math.log(alpha)
    rho2 = (two_log + math.log(1 + two_log)) / target_events
    return max(1.0, 1 / rho2 - 1)


def null_share(prev_conversations: float, new_conversations: float, ratio: float) -> float:
    """θ0: the new arm's share of events if λ_new = ratio·λ_prev."""
    weighted = ratio * new_conversations
    total = weighted + prev_conversations
    return weighted / total if total > 0 else 0.0


def _log_tail(a: float, b: float, theta0: float, side: CountSide) -> float:
    """log P(θ > θ0) (GREATER) or log P(θ < θ0) (LESS) under Beta(a, b)."""
    tail = (
        special.betaincc(a, b, theta0)
        if side is CountSide.GREATER
        else special.betainc(a, b, theta0)
    )
    return math.log(tail) if tail > 0 else -math.inf


def binomial_mixture_log_e(
    k: float, total: float, theta0: float, *, side: CountSide, strength: float
) -> float:
    """log M: evidence that θ > θ0 (GREATER) or θ < θ0 (LESS) after k of ``total`` events.

    ``k`` events of ``total`` fell in the new arm. No event, or θ0 at 0 or 1 (no
    conversations in an arm), gives no evidence (log M = 0).
    """
    if k < 0 or total < k:
        msg = f"need 0 <= k <= total, got k={k}, total={total}"
        raise StatsInputError(msg)
    if total == 0 or not 0 < theta0 < 1:
        return 0.0
    a, b = strength * theta0, strength * (1 - theta0)
    log_prior_tail = _log_tail(a, b, theta0, side)
    log_post_tail = _log_tail(a + k, b + total - k, theta0, side)
    if not math.isfinite(log_prior_tail):
        return 0.0
    if not math.isfinite(log_post_tail):
        return -_MAX_LOG_E
    log_marginal = special.betaln(a + k, b + total - k) - special.betaln(a, b)
    log_null = k * math.log(theta0) + (total - k) * math.log1p(-theta0)
    value = float(log_marginal + log_post_tail - log_prior_tail - log_null)
    return max(-_MAX_LOG_E, min(_MAX_LOG_E, value))


def stratified_count_e_value(
    strata: list[tuple[float, float, float, float]],
    *,
    ratio: float,
    side: CountSide,
    strength: float,
) -> float:
    """Product over steps of the mixture e-values; each step is (N_prev, k_prev, N_new, k_new).

    Counts are rounded to whole events (they are integer for unweighted metrics).
    """
    log_e = 0.0
    for n_prev, k_prev, n_new, k_new in strata:
        theta0 = null_share(n_prev, n_new, ratio)
        k = round(k_new)
        total = k + round(k_prev)
        log_e += binomial_mixture_log_e(k, total, theta0, side=side, strength=strength)
    return math.exp(max(-_MAX_LOG_E, min(_MAX_LOG_E, log_e)))
