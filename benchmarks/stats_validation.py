"""Validate the version-comparison statistics by simulation: A/A error rates and power.

Prints, asserts nothing. Each scenario simulates whole rollouts with
``analytics.stats.simulation.simulate_rollout`` (default ``ComparisonSettings``, or the
``LORALOOP_COMPARE__*`` environment) and reports, per scenario, one line exactly (here
wrapped):

    scenario=<name> split=<fraction> runs=<n> false_regressed=<rate>
    false_solved=<rate> power_30pct=<rate or ->

``false_regressed``: share of runs with any look whose decision is roll_back (nothing got
worse in any scenario here). ``false_solved``: share of runs in which any unchanged
problem type is a solved_candidate at any look. ``power_30pct``: for the power
scenarios only, the share of runs in which, at any look, the canary's 30 % reduction is
shown (``*_shown``: the always-valid upper bound on new − prev, at α, below 0) or called
solved (``*_solved``: solved_candidate, i.e. shown to exceed δ = 20 % at α/K, twice).
Lines starting with ``#`` are extra figures and timings; progress goes to stderr.

Traffic model (clustered, harder than the loop's own): users arrive in batches, one
look after each batch; each user has 1 + negative-binomial (mean 1, shape 0.7)
conversations, a log-normal propensity (σ = 0.8, mean 1) multiplying every rate, and a
sticky bucket; returning conversations land a geometric number of batches later, so
users span rollout steps. Metrics: five problem types at 2, 4, 6, 8, 10 % per
conversation, guardrails risk_reject_rate 5 % (higher is worse) and conversion_rate 10 %
(lower is worse).

Scenarios:

- aa_split_{1,5,25,50}pct: A/A, one step of 10 batches at a canary share of 1, 5, 25,
  50 % (10 000, 4 000, 2 000, 1 000 users per batch);
- aa_drift: A/A over the steps 5 % → 25 % → 50 % (4 batches each, 2 000 users per batch)
  with every rate × 1, 1.25, 1.5 per step (the canary's share grows with the rate: only
  the step-stratified comparison stays unbiased);
- aa_label_lag: as aa_drift without drift, the five types label-derived with labels
  arriving a geometric number of batches late (P(still missing one batch later) = 0.25;
  unlabelled conversations count 0); a ``#`` line gives the share of verdicts past the
  insufficient_labels / insufficient_data gates;
- power_<size>: 50/50, 10 batches, an extra type ``fixed_5pct`` at 5 % that the canary
  cuts by 30 %, users per batch sized so each arm holds about <size> conversations at
  the last look (conversations per user measured on aa_split_50pct, same shape).

Targets: every A/A line false_regressed ≤ 0.05 and false_solved ≤ 0.05 (α = 0.05, both
family-wise over the rollout). Power at 5k conversations per arm: shown ≥ 0.8. Solved
needs the drop to exceed δ = 20 %, not 0: even a fixed-horizon one-sided z-test at
α = 0.05 (no Bonferroni, no clustering) has power ≈ 0.39 at 5k (≈ 0.8 near 16k), so the
larger sizes (power_20k_solved, ...) say where always-valid solved reaches 0.8: near
80k conversations per arm when written (--quick, seed 0), about 5x the fixed-horizon
size (clustering, bounds tuned for ``cs_target_n``, Bonferroni over K = 6, two looks).
In aa_label_lag the newest batch is only about 75 % labelled, so early looks stay below
``min_label_coverage`` (0.9, ``insufficient_labels``) and later ones pass it: the
scenario checks both the gate and the verdicts on lagging labels after it. (With a
delay probability of 0.5 coverage stays near 0.85 and every target verdict is withheld.)

    .venv/bin/python benchmarks/stats_validation.py            # 400 A/A, 200 power runs
    .venv/bin/python benchmarks/stats_validation.py --quick    # < 10 min on 2 cores
    .venv/bin/python benchmarks/stats_validation.py --runs 1000 --power-runs 400 --seed 1

Each run is seeded from (--seed, scenario, run index), so the figures do not depend on
--workers.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.stats import ComparisonSettings, Decision, Direction, Side, Verdict
from analytics.stats.contrast import difference_interval
from analytics.stats.simulation import (
    ClusteredTraffic,
    RolloutStep,
    SimulatedMetric,
    simulate_rollout,
)

TYPES = ("objection", "cta_timing", "knowledge", "over_promise", "policy")
BASE_RATES = (0.02, 0.04, 0.06, 0.08, 0.10)
GUARDRAILS = (
    SimulatedMetric("risk_reject_rate", 0.05, guardrail=True),
    SimulatedMetric("conversion_rate", 0.10, direction=Direction.LOWER_IS_WORSE, guardrail=True),
)
FIXED = "fixed_5pct"
FIXED_RATE = 0.05
EFFECT = -0.3
POWER_BATCHES = 10
POWER_SIZES = (1_000, 5_000)
LARGE_SIZES = (20_000, 50_000, 100_000, 200_000)
QUICK_LARGE_SIZES = (20_000, 50_000, 100_000)
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
GATED = frozenset({Verdict.INSUFFICIENT_LABELS, Verdict.INSUFFICIENT_DATA})


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    split: str
    traffic: ClusteredTraffic
    runs: int
    power: bool = False


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one simulated rollout contributes to its scenario's line."""

    regressed: bool
    false_solved: bool
    shown: bool
    solved: bool
    informative: int  # (look, unchanged type) pairs past the data and label gates
    informative_looks: int  # looks with any such type
    looks: int
    prev_events: float  # conversations per arm at the last look
    new_events: float
    coverage: float  # lowest label coverage of the two arms at the last look (1 if unlabelled)
    cpu_s: float  # the worker's CPU time for this run


def metrics(*, labelled: bool = False, fixed: bool = False) -> list[SimulatedMetric]:
    targets = [
        SimulatedMetric(n, r, labelled=labelled) for n, r in zip(TYPES, BASE_RATES, strict=True)
    ]
    if fixed:
        targets.append(SimulatedMetric(FIXED, FIXED_RATE, EFFECT))
    return [*targets, *GUARDRAILS]


def aa_scenarios(runs: int) -> list[Scenario]:
    single = [(0.01, 10_000), (0.05, 4_000), (0.25, 2_000), (0.5, 1_000)]
    out = [
        Scenario(
            f"aa_split_{share * 100:g}pct",
            f"{share:g}",
            ClusteredTraffic(metrics(), [RolloutStep(share, 10)], users_per_batch),
            runs,
        )
        for share, users_per_batch in single
    ]
    drift = [RolloutStep(0.05, 4, 1.0), RolloutStep(0.25, 4, 1.25), RolloutStep(0.5, 4, 1.5)]
    out.append(
        Scenario("aa_drift", "0.05-0.25-0.5", ClusteredTraffic(metrics(), drift, 2_000), runs)
    )
    steps = [RolloutStep(0.05, 4), RolloutStep(0.25, 4), RolloutStep(0.5, 4)]
    lag = ClusteredTraffic(metrics(labelled=True), steps, 2_000, label_delay_probability=0.25)
    out.append(Scenario("aa_label_lag", "0.05-0.25-0.5", lag, runs))
    return out


def power_scenario(size: int, conversations_per_user: float, runs: int) -> Scenario:
    users_per_batch = max(1, round(2 * size / (conversations_per_user * POWER_BATCHES)))
    traffic = ClusteredTraffic(
        metrics(fixed=True), [RolloutStep(0.5, POWER_BATCHES)], users_per_batch
    )
    return Scenario(f"power_{size // 1000}k", "0.5", traffic, runs, power=True)


_SETTINGS: ComparisonSettings | None = None


def _init(settings: ComparisonSettings) -> None:
    global _SETTINGS
    _SETTINGS = settings


def _run(task: tuple[Scenario, int, int]) -> RunSummary:
    scenario, index, seed = task
    cpu = time.process_time()
    cfg = _SETTINGS or ComparisonSettings()
    key = zlib.crc32(scenario.name.encode())
    rng = np.random.default_rng(np.random.SeedSequence([seed, key, index]))
    looks = simulate_rollout(scenario.traffic, rng=rng, settings=cfg)
    unchanged = [m.name for m in scenario.traffic.metrics if not m.guardrail and m.name != FIXED]
    shown = solved = false_solved = False
    informative = informative_looks = 0
    for look in looks:
        false_solved |= any(look.targets[n].verdict is Verdict.SOLVED_CANDIDATE for n in unchanged)
        past_gates = sum(look.targets[n].verdict not in GATED for n in unchanged)
        informative += past_gates
        informative_looks += past_gates > 0
        if scenario.power:
            fixed = look.targets[FIXED]
            bound = difference_interval(
                fixed.prev, fixed.new, alpha=cfg.alpha, target_n=cfg.cs_target_n, side=Side.UPPER
            )
            shown |= bound.upper < 0
            solved |= fixed.verdict is Verdict.SOLVED_CANDIDATE
    last = looks[-1].targets[unchanged[0]]
    return RunSummary(
        regressed=any(look.decision is Decision.ROLL_BACK for look in looks),
        false_solved=false_solved,
        shown=shown,
        solved=solved,
        informative=informative,
        informative_looks=informative_looks,
        looks=len(looks),
        prev_events=last.prev.events,
        new_events=last.new.events,
        coverage=last.coverage.lowest if last.coverage is not None else 1.0,
        cpu_s=time.process_time() - cpu,
    )


def simulate(pool: mp.pool.Pool, scenario: Scenario, seed: int) -> tuple[list[RunSummary], float]:
    started = time.perf_counter()
    tasks = [(scenario, i, seed) for i in range(scenario.runs)]
    out: list[RunSummary] = []
    step = max(1, scenario.runs // 4)
    for done, summary in enumerate(pool.imap(_run, tasks), start=1):
        out.append(summary)
        if done % step == 0 or done == scenario.runs:
            elapsed = time.perf_counter() - started
            print(f"  {scenario.name}: {done}/{scenario.runs} [{elapsed:.0f} s]", file=sys.stderr)
    return out, time.perf_counter() - started


def share(values: Sequence[bool]) -> float:
    return float(np.mean(values)) if values else math.nan


def line(name: str, scenario: Scenario, runs: list[RunSummary], power: float | None) -> str:
    shown = "-" if power is None else f"{power:.3f}"
    return (
        f"scenario={name} split={scenario.split} runs={len(runs)} "
        f"false_regressed={share([r.regressed for r in runs]):.3f} "
        f"false_solved={share([r.false_solved for r in runs]):.3f} power_30pct={shown}"
    )


def report(scenario: Scenario, runs: list[RunSummary], elapsed: float) -> list[str]:
    """The scenario's line(s) and its '#' lines."""
    if not scenario.power:
        out = [line(scenario.name, scenario, runs, None)]
    else:
        out = [
            line(f"{scenario.name}_shown", scenario, runs, share([r.shown for r in runs])),
            line(f"{scenario.name}_solved", scenario, runs, share([r.solved for r in runs])),
        ]
        prev = float(np.mean([r.prev_events for r in runs]))
        new = float(np.mean([r.new_events for r in runs]))
        out.append(
            f"# {scenario.name}: {scenario.traffic.users_per_batch} users/batch, "
            f"conversations per arm at the last look: prev {prev:,.0f}, new {new:,.0f} "
            "(mean over runs)"
        )
    cpu = sum(r.cpu_s for r in runs)
    out.append(f"# {scenario.name}: {elapsed:.1f} s ({cpu:.1f} CPU s in the workers)")
    return out


def label_lag_note(runs: list[RunSummary]) -> str:
    types = len(TYPES)
    pairs = sum(r.looks for r in runs) * types
    looks = sum(r.looks for r in runs)
    return (
        "# aa_label_lag: share of (look, type) verdicts other than insufficient_labels/"
        f"insufficient_data: {sum(r.informative for r in runs) / pairs:.3f}; "
        f"share of looks with any: {sum(r.informative_looks for r in runs) / looks:.3f}; "
        f"lowest label coverage at the last look: {np.mean([r.coverage for r in runs]):.3f} "
        "(mean over runs)"
    )


def conversations_per_user(scenario: Scenario, runs: list[RunSummary]) -> float:
    """Conversations per user within the window, measured on a completed scenario."""
    traffic = scenario.traffic
    served = np.mean([r.prev_events + r.new_events for r in runs])
    return float(served / (traffic.users_per_batch * traffic.batches))


def reaches(results: list[tuple[int, float]], goal: float = 0.8) -> str:
    """Where the solved share first reaches ``goal`` (log-linear between tested sizes)."""
    below: tuple[int, float] | None = None
    for size, rate in results:
        if rate >= goal:
            if below is None:
                return f"solved >= {goal} already at {size:,} conversations per arm"
            (n0, r0), (n1, r1) = below, (size, rate)
            at = math.exp(math.log(n0) + (goal - r0) / (r1 - r0) * math.log(n1 / n0))
            return (
                f"solved reaches {goal} near {at:,.0f} conversations per arm "
                f"(interpolated between {n0:,} and {n1:,})"
            )
        below = (size, rate)
    biggest = results[-1][0] if results else 0
    return f"solved stays below {goal} up to {biggest:,} conversations per arm"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=(
            "Defaults: 400 runs per A/A scenario, 200 per power scenario at 1k, 5k, 20k, "
            "50k, 100k and 200k conversations per arm. --quick: 400 A/A runs, 100 power "
            "runs, sizes up to 100k (under 10 minutes on 2 cores)."
        ),
    )
    parser.add_argument("--runs", type=int, default=400, help="runs per A/A scenario (400)")
    parser.add_argument(
        "--power-runs",
        type=int,
        default=None,
        help="runs per power scenario (200; 100 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer power runs and sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (cpu count)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse()
    power_runs = args.power_runs or (100 if args.quick else 200)
    sizes = (*POWER_SIZES, *(QUICK_LARGE_SIZES if args.quick else LARGE_SIZES))
    settings = ComparisonSettings()
    started = time.perf_counter()
    solved_by_size: list[tuple[int, float]] = []
    # One BLAS thread per worker (the per-user matrix products otherwise contend for the
    # cores the workers use, about twice as slow); spawned workers load numpy afresh.
    for variable in BLAS_THREADS:
        os.environ.setdefault(variable, "1")
    context = mp.get_context("spawn")
    with context.Pool(args.workers, initializer=_init, initargs=(settings,)) as pool:
        measured: float | None = None
        for scenario in aa_scenarios(args.runs):
            runs, elapsed = simulate(pool, scenario, args.seed)
            print("\n".join(report(scenario, runs, elapsed)), flush=True)
            if scenario.name == "aa_label_lag":
                print(label_lag_note(runs), flush=True)
            if scenario.name == "aa_split_50pct":
                measured = conversations_per_user(scenario, runs)
        assert measured is not None  # aa_split_50pct always runs
        print(
            f"# conversations per user within {POWER_BATCHES} batches (aa_split_50pct): "
            f"{measured:.3f}",
            flush=True,
        )
        for size in sizes:
            scenario = power_scenario(size, measured, power_runs)
            runs, elapsed = simulate(pool, scenario, args.seed)
            print("\n".join(report(scenario, runs, elapsed)), flush=True)
            solved_by_size.append((size, share([r.solved for r in runs])))
    print(f"# {reaches(solved_by_size)}")
    print(f"# total: {time.perf_counter() - started:.1f} s on {args.workers} workers")


if __name__ == "__main__":
    main()
