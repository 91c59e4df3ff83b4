"""Exact bookkeeping: which versions trained a sample, the cycle row's id lists, the flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from analytics.flags import FlagKind
from tests.trainer_fixtures import baseline_sample, make_pool, problem_sample
from trainer.config import DatasetConfig
from trainer.cycle_log import COLUMNS, CycleRecord
from trainer.dataset import build_dataset
from trainer.manifest import MANIFEST_FILE
from trainer.pool import LabelledRow, times_trained, trained_sample_ids
from trainer.records import Tier
from trainer.registry import Registry, write_version
from trainer.service import cycle_flags
from trainer.versions import VersionInfo, VersionStatus

T0 = datetime(2025, 1, 1, tzinfo=UTC)
BASE = {"name": "tiny", "source": "/models/tiny", "sha256": "ab" * 32}


def _register(registry: Registry, manifest: dict[str, object], *, passed: bool, day: int) -> None:
    name = registry.reserve()
    with registry.staged(name) as staging:
        (staging / MANIFEST_FILE).write_bytes(orjson.dumps(manifest))
        info = VersionInfo(
            name=name,
            parent=None,
            base_model=BASE,
            created_at=T0 + timedelta(days=day),
            status=VersionStatus.TRAINED if passed else VersionStatus.GATED_OUT,
            gate_passed=passed,
        )
        write_version(staging, info)


def _row(sample_id: str, labelled: datetime) -> LabelledRow:
    return LabelledRow(
        sample_id, "c", Tier.PROBLEM, ["over_promise"], "x", None, labelled, labelled
    )


def test_times_trained_counts_gate_passed_versions_that_trained_this_label(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path)
    every = ["p1", "p2", "held"]
    _register(registry, {"source_sample_ids": every, "trained_sample_ids": ["p1", "p2"]},
              passed=True, day=1)  # fmt: skip
    _register(registry, {"source_sample_ids": every, "trained_sample_ids": ["p1"]},
              passed=False, day=2)  # fmt: skip
    _register(registry, {"source_sample_ids": every, "trained_sample_ids": ["p1"]},
              passed=True, day=3)  # fmt: skip
    _register(registry, {"source_sample_ids": ["old"]}, passed=True, day=4)  # before the key
    trained = trained_sample_ids(registry)
    assert set(trained) == {"p1", "p2", "old"}  # "held" was never trained
    assert times_trained(_row("p1", T0), trained) == 2  # the gated-out version does not count
    assert times_trained(_row("p2", T0), trained) == 1
    assert times_trained(_row("held", T0), trained) == 0
    # A corrected label after a version starts the count again.
    assert times_trained(_row("p1", T0 + timedelta(days=2)), trained) == 1
    assert times_trained(_row("old", T0), trained) == 1


def test_the_cycle_row_carries_the_manifest_id_lists() -> None:
    pool = make_pool()
    pool.append(baseline_sample(0, Tier.CORE_BASELINE).model_copy(update={"sample_id": "zz"}))
    manifest = build_dataset(pool, config=DatasetConfig()).manifest
    record = CycleRecord("c1", "manual", T0).with_manifest(manifest)
    row = dict(zip(COLUMNS, record.row(), strict=True))
    assert row["trained_ids"] == manifest["trained_sample_ids"]
    assert row["heldout_ids"] == manifest["heldout_sample_ids"]
    assert row["regression_ids"] == manifest["regression_sample_ids"]
    assert row["duplicate_ids"] == ["zz"]
    assert row["evaluation_ids"] == []
    assert CycleRecord("c2", "manual", T0).with_manifest(None).trained_ids == []


def test_cycle_flags_name_the_not_learned_baseline_and_new_downweighted_problems() -> None:
    config = DatasetConfig(heldout_fraction=0, baseline_eval_fraction=0)
    core = baseline_sample(1, Tier.CORE_BASELINE)
    recurring = core.model_copy(
        update={"sample_id": "again", "status": Tier.PROBLEM, "problem_types": ["over_promise"]}
    )
    unsolved = problem_sample(3, "over_promise").model_copy(update={"times_trained": 2})
    known = problem_sample(5, "over_promise").model_copy(update={"times_trained": 4})
    pool = [*make_pool(baselines=12, problems=0), recurring, unsolved, known]
    pool = [s for s in pool if s.sample_id != "b001"] + [core]
    manifest = build_dataset(pool, config=config).manifest
    flags = cycle_flags(manifest, pool, cycle_id="c9", already_downweighted={"p005"}, config=config)
    by_kind = {(f.kind, f.sample_id): f for f in flags}
    assert set(by_kind) == {(FlagKind.NOT_LEARNED, "b001"), (FlagKind.DOWNWEIGHTED, "p003")}
    not_learned = by_kind[(FlagKind.NOT_LEARNED, "b001")]
    assert "again" in not_learned.reason
    assert not_learned.actor == "trainer"
    assert not_learned.evidence == {"cycle_id": "c9", "problem_id": "again"}
    downweighted = by_kind[(FlagKind.DOWNWEIGHTED, "p003")]
    assert downweighted.reason == "unsolved after 2 cycles"
    assert downweighted.evidence["weight_factor"] == config.unsolved_weight_factor
    # The same flag written again is the same row.
    again = cycle_flags(manifest, pool, cycle_id="c9", already_downweighted=set(), config=config)
    assert not_learned.flag_id in {f.flag_id for f in again}
