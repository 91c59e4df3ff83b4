"""Validate the version-comparison statistics by simulation: A/A error rates and power.

Prints, asserts nothing. Stated traffic: 50/50 split, 20 looks (the verdict is computed
at every look), users with 1 + Poisson(0.5) conversations and Gamma(2) heterogeneous
propensities; five problem types at 2, 4, 6, 8, 10 % per conversation and two guardrails
(Risk/Reject 5 %, higher is worse; conversion 10 %, lower is worse). Default settings
(α = 0.05, δ = 0.2, 150 conversations per arm, tuned for 10 000 users).

    .venv/bin/python benchmarks/stats_validation.py [--runs 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from analytics.stats import Comparison, ComparisonSettings, Decision, Direction, Verdict
from analytics.stats.simulation import CanaryTraffic, SimulatedMetric, simulate_canary

TYPES = ("objection", "cta_timing", "knowledge", "over_promise", "policy")
BASE_RATES = (0.02, 0.04, 0.06, 0.08, 0.10)
GUARDRAILS = (
    SimulatedMetric("risk_reject_rate", 0.05, guardrail=True),
    SimulatedMetric("conversion_rate", 0.10, direction=Direction.LOWER_IS_WORSE, guardrail=True),
)
LOOKS = 20
CONVERSATIONS_PER_USER = 1.5


def traffic(effects: Sequence[float], users_per_look: int) -> CanaryTraffic:
    targets = [SimulatedMetric(n, r, e) for n, r, e in zip(TYPES, BASE_RATES, effects, strict=True)]
    return CanaryTraffic([*targets, *GUARDRAILS], users_per_look, LOOKS)


def simulate(
    t: CanaryTraffic, runs: int, seed: int, settings: ComparisonSettings
) -> list[list[Comparison]]:
    rng = np.random.default_rng(seed)
    return [simulate_canary(t, rng=rng, settings=settings) for _ in range(runs)]


def first_look(looks: list[Comparison], metric: str, verdict: Verdict) -> int | None:
    for i, look in enumerate(looks):
        result = look.targets.get(metric) or look.guardrails[metric]
        if result.verdict is verdict:
            return i + 1
    return None


def share(runs: list[list[Comparison]], metric: str, verdict: Verdict) -> float:
    return float(np.mean([first_look(r, metric, verdict) is not None for r in runs]))


def aa(runs_n: int, seed: int, users: int, settings: ComparisonSettings, label: str) -> None:
    started = time.perf_counter()
    runs = simulate(traffic([0.0] * 5, users), runs_n, seed, settings)
    roll_back = np.mean([any(x.decision is Decision.ROLL_BACK for x in r) for r in runs])
    print(f"\nA/A, {label}: {runs_n} canaries x {LOOKS} looks, {users} users/arm/look")
    print(f"  {'metric':<18} {'false regressed':>16} {'false solved':>13}")
    for metric in (*TYPES, "risk_reject_rate", "conversion_rate"):
        solved = f"{share(runs, metric, Verdict.SOLVED_CANDIDATE):.3f}" if metric in TYPES else "-"
        print(f"  {metric:<18} {share(runs, metric, Verdict.REGRESSED):>16.3f} {solved:>13}")
    print(f"  false roll_back (any metric, any look): {roll_back:.3f}   (alpha = {settings.alpha})")
    print(f"  [{time.perf_counter() - started:.1f} s]")


def boundary_null(runs_n: int, seed: int, settings: ComparisonSettings) -> None:
    runs = simulate(traffic([-settings.delta] * 5, 1_000), runs_n, seed, settings)
    shares = ", ".join(f"{n} {share(runs, n, Verdict.SOLVED_CANDIDATE):.3f}" for n in TYPES)
    print(
        f"\nEvery type down exactly delta = {settings.delta:.0%} (least favourable null), "
        f"1000 users/arm/look: false solved per type: {shares}"
    )


def power(runs_n: int, seed: int, users: int, settings: ComparisonSettings) -> None:
    runs = simulate(traffic([0.0, 0.0, 0.0, -0.3, -0.3], users), runs_n, seed, settings)
    print(
        f"\nPower: over_promise (8 %) and policy (10 %) down 30 %, {users} users/arm/look "
        f"(~{users * CONVERSATIONS_PER_USER:.0f} conversations/arm/look), {runs_n} canaries"
    )
    for metric in ("over_promise", "policy"):
        firsts = [f for r in runs if (f := first_look(r, metric, Verdict.SOLVED_CANDIDATE))]
        detected = len(firsts) / runs_n
        if firsts:
            median = float(np.median(firsts))
            print(
                f"  {metric:<13} solved_candidate in {detected:.1%} of runs; median look "
                f"{median:g} = {median * users:,.0f} users "
                f"(~{median * users * CONVERSATIONS_PER_USER:,.0f} conversations) per arm"
            )
        else:
            print(f"  {metric:<13} never solved")
    others = max(share(runs, n, Verdict.SOLVED_CANDIDATE) for n in TYPES[:3])
    print(f"  unchanged types called solved: {others:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="simulated canaries per scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    default = ComparisonSettings()
    aa(args.runs, args.seed, 500, default, "default (alpha split over 7 metrics for regression)")
    aa(
        args.runs,
        args.seed + 1,
        500,
        ComparisonSettings(familywise_regression=False),
        "familywise_regression=False (alpha per metric)",
    )
    aa(args.runs, args.seed + 2, 50, default, "low traffic")
    boundary_null(args.runs, args.seed + 3, default)
    for users in (1_000, 2_000):
        power(args.runs, args.seed + 4, users, default)


if __name__ == "__main__":
    main()
