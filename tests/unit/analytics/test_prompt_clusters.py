"""``LORALOOP_RATES__CLUSTER_BY=opening_prompt``: a deterministic simulator's repeated
conversations are one cluster per opening prompt, not independent observations.

Eighty users per arm, but only four distinct opening prompts (written with varying case and
spaces), and whether a conversation shows the problem depends on its prompt alone, as it
does when a greedy model answers a fixed prompt the same way every time. Clustered by user
the variance pretends there are 80 observations; by opening prompt there are 4.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from analytics.comparison import arm_sums
from analytics.rate_config import RateQuerySettings
from analytics.rate_queries import cluster_sql, target_specs
from analytics.rows import COLUMNS, CONVERSATION_COLUMNS
from analytics.stats import stratified_rate
from analytics.warehouse import Warehouse
from tests.pool_seed import fresh_warehouse

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)
TYPE = "missing_knowledge"
USERS = 80
PROMPTS = ("How much is the course?", "Can I get a refund?", "Is there a trial?", "Who teaches?")
ARMS = {"model_v1": {0, 1}, "model_v2": {0}}
"""The prompts (by index) whose deterministic reply shows the problem, per version."""


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    with fresh_warehouse(tmp_path) as wh:
        conversations, turns, assignments = [], [], []
        for version, failing in ARMS.items():
            for i in range(USERS):
                user, cid = f"{version}-u{i}", f"{version}-c{i}"
                prompt = i % len(PROMPTS)
                text = PROMPTS[prompt] if i % 3 else f"  {PROMPTS[prompt].upper()} "
                ts = T0 + timedelta(minutes=1 + i)
                problem = prompt in failing
                assignments.append([user, version, T0])
                conversations.append([
                    cid, user, "standard", version, ts, ts, 2, [], False,
                    "Risk" if problem else "Accept", [TYPE] if problem else [], 0, 0, 0,
                    True, 1.0, 1,
                ])  # fmt: skip
                turns.append([f"{cid}-t0", ts, cid, user, 0, "user", text, "", False])
        wh.insert("conversations", conversations, column_names=CONVERSATION_COLUMNS)
        wh.insert("turns", turns, column_names=COLUMNS["turns"])
        wh.insert("assignments", assignments, column_names=("user_id", "version", "first_exposure"))
        yield wh


def _rate(
    warehouse: Warehouse, cluster_by: Literal["user", "opening_prompt"], version: str
) -> tuple[int, float, float]:
    settings = RateQuerySettings(target_source="qa", problem_types=[TYPE], cluster_by=cluster_by)
    specs = target_specs(settings)
    sums = arm_sums(warehouse, specs, versions=("model_v2", "model_v1"), settings=settings)
    arm = sums.get(version, TYPE)
    estimate = stratified_rate(arm, [1.0])
    return arm.distinct_users, estimate.rate, estimate.variance


def test_opening_prompts_are_the_clusters_and_widen_the_variance(warehouse: Warehouse) -> None:
    by_user = _rate(warehouse, "user", "model_v1")
    by_prompt = _rate(warehouse, "opening_prompt", "model_v1")
    assert by_user[0] == USERS
    assert by_prompt[0] == len(PROMPTS)  # case and surrounding spaces aside
    assert by_user[1] == pytest.approx(0.5)
    assert by_prompt[1] == pytest.approx(by_user[1])  # the rate is the same either way
    assert by_prompt[2] > 10 * by_user[2]  # 4 observations, not 80


def test_an_unknown_cluster_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="cluster_by must be one of"):
        cluster_sql([], 1, cluster_by="conversation")
