"""The training service on a real chdb warehouse and the tiny model.

The pool is seeded the way capture and the console write it: ``samples`` rows,
statuses through ``sample_transitions``, labels in ``sample_labels``, transcripts
in ``turns`` (Chinese and English, with phone numbers and e-mail addresses).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics.rows import COLUMNS, CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from analytics.warehouse import Warehouse
from loraloop.settings import Settings
from tests.reliability.figures import record
from tests.trainer_fixtures import TINY_TRAIN, tiny_checkpoint
from trainer.cycle_log import CycleStatus
from trainer.launcher import TrainProgress
from trainer.manifest import DATASET_FILE
from trainer.mirror import set_status, sync_registry
from trainer.observe import observe
from trainer.registry import Registry
from trainer.service import run_cycle_now, serve
from trainer.service_config import TrainerSettings
from trainer.versions import VersionStatus

__all__ = ["tiny_checkpoint"]

# Recent: raw text older than LORALOOP_WAREHOUSE__TEXT_TTL_DAYS is gone.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
PHONE, EMAIL = "13812345678", "li.wei@example.com"
TRANSITION_COLUMNS = (
    "transition_id", "sample_id", "seq", "from_status", "to_status", "action", "actor", "role",
    "reason", "evidence", "proposal", "ts", "actor_kind",
)  # fmt: skip
LABEL_COLUMNS = (
    "sample_id", "revision", "acceptance", "problem_types", "risk_level", "corrected_response",
    "notes", "labelled_by", "role", "source", "simulated", "ts",
)  # fmt: skip
LADDER = ["problem", "candidate_baseline", "secondary_baseline", "core_baseline"]
BASELINE_QUESTIONS = [
    ("How much is the {plan} plan?", "The {plan} plan costs {n} dollars a month."),
    ("{plan}套餐多少钱？", "{plan}套餐每月{n}元。"),
]
PLANS = ["basic", "plus", "pro", "team", "family", "student"]


def _transitions(sample_id: str, path: list[str], start: datetime) -> list[list[Any]]:
    statuses = ["captured", *path]
    rows = []
    for seq, (before, after) in enumerate(zip(["", *statuses], statuses, strict=False)):
        action = {"captured": "capture", "problem": "label"}.get(after, "promote")
        role = "system" if action == "capture" else "approver"
        rows.append(
            [
                f"{sample_id}:{seq}", sample_id, seq, before, after, action, "tester", role, "",
                "{}", False, start + timedelta(minutes=seq), "human" if role != "system" else role,
            ]
        )  # fmt: skip
    return rows


class PoolSeeder:
    """Writes conversations and their samples; ``n`` keeps every text distinct."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.n = 0

    def conversation(self, turns: list[tuple[str, str]], *, signal_turn: int | None) -> str:
        self.n += 1
        cid, start = f"c{self.n:03d}", T0 + timedelta(minutes=self.n)
        rows = [
            [f"{cid}-t{i}", start + timedelta(seconds=i), cid, "u1", i, role, text, "", False]
            for i, (role, text) in enumerate(turns)
        ]
        self.warehouse.insert("turns", rows, column_names=COLUMNS["turns"])
        if signal_turn is not None:
            signal = [f"s-{cid}", start, "complaint", cid, "u1", "", signal_turn, 2.0, "{}"]
            self.warehouse.insert("signals", [signal], column_names=COLUMNS["signals"])
        return cid

    def sample(
        self, cid: str, path: list[str], types: list[str], corrected: str, *, labelled: datetime
    ) -> str:
        sid = f"smp-{cid}"
        sample = [sid, cid, "u1", "captured", [], ["complaint"], 2.0, 0.5, "", "", T0, T0, 1, "s"]
        self.warehouse.insert("samples", [sample], column_names=SAMPLE_COLUMNS)
        self.warehouse.insert(
            "sample_transitions", _transitions(sid, path, labelled), column_names=TRANSITION_COLUMNS
        )
        label = [
            sid, 1, "Risk", types, "medium", corrected, "", "tester", "labeller", "console", False,
            labelled,
        ]  # fmt: skip
        self.warehouse.insert("sample_labels", [label], column_names=LABEL_COLUMNS)
        return sid

    def baseline(self, index: int, tier: str) -> str:
        question, answer = BASELINE_QUESTIONS[index % 2]
        plan, n = PLANS[index % len(PLANS)], index + 5
        turns = [("user", question.format(plan=plan) + f" #{index}"), ("assistant", "hmm")]
        cid = self.conversation(turns, signal_turn=None)
        path = LADDER[: LADDER.index(tier) + 1]
        return self.sample(
            cid, path, ["missing_knowledge"], answer.format(plan=plan, n=n), labelled=T0
        )

    def problem(self, index: int, problem_type: str, *, labelled: datetime = T0) -> str:
        turns = [
            ("system", "You are a sales assistant."),
            ("user", f"我想了解pro套餐 {index}，电话{PHONE}"),
            ("assistant", "pro套餐很好。"),
            ("user", f"Can you email me at {EMAIL}? Question {index}"),
            ("assistant", "Buy now! Guaranteed to fix everything!"),
            ("user", "That is not what I asked."),
            ("human_agent", "Let me help you."),
        ]
        cid = self.conversation(turns, signal_turn=5)
        corrected = {
            "over_promise": "I cannot promise that; here is what the plan includes.",
            "wrong_CTA_timing": "先回答您的问题，之后再谈购买。",
        }[problem_type]
        return self.sample(cid, ["problem"], [problem_type], corrected, labelled=labelled)


def seed_pool(warehouse: Warehouse, *, problems: bool = True) -> dict[str, list[str]]:
    """12 baselines over the three tiers and, with ``problems``, 8 problems of two types."""
    seeder = PoolSeeder(warehouse)
    tiers = ["core_baseline", "secondary_baseline", "candidate_baseline"]
    seeded = {"baseline": [seeder.baseline(i, tiers[i % 3]) for i in range(12)]}
    if problems:
        types = ["over_promise", "wrong_CTA_timing"]
        seeded["problem"] = [seeder.problem(i, types[i % 2]) for i in range(8)]
    return seeded


@pytest.fixture
def tiny_env(
    isolated_env: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings on a fresh data dir; the tiny model and a few steps through the environment."""
    monkeypatch.setenv("LORALOOP_TRAIN__BASE_MODEL", str(tiny_checkpoint))
    for key, value in (TINY_TRAIN | {"max_steps": 6}).items():
        monkeypatch.setenv(f"LORALOOP_TRAIN__{key.upper()}", str(value).lower())
    for key, value in {
        "probe_prompts": "2",
        "probe_max_new_tokens": "8",
        "baseline_tolerance": "1.0",
    }.items():
        monkeypatch.setenv(f"LORALOOP_GATE__{key.upper()}", value)
    monkeypatch.setenv("LORALOOP_DATASET__PROBLEM_WEIGHT", "1.0")
    return Settings()


@pytest.fixture
def warehouse(tiny_env: Settings) -> Iterator[Warehouse]:
    opened = Warehouse.from_settings(tiny_env)
    try:
        yield opened
    finally:
        opened.close()


def cycles(warehouse: Warehouse) -> list[dict[str, Any]]:
    result = warehouse.query("SELECT * FROM training_cycles FINAL ORDER BY started_at")
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def test_cycle_trains_registers_and_mirrors(warehouse: Warehouse, tiny_env: Settings) -> None:
    seeded = seed_pool(warehouse)
    trainer = TrainerSettings()
    events: list[TrainProgress] = []
    report = run_cycle_now(
        warehouse, tiny_env, trainer, reason="threshold", on_progress=events.append
    )
    assert report.status is CycleStatus.REGISTERED, report.error
    assert report.version is not None
    assert (report.version.name, report.version.gate_passed) == ("model_v1", True)
    assert report.pool == {
        "candidate_baseline": 4, "core_baseline": 4, "problem": 8, "secondary_baseline": 4,
        "skipped": 0,
    }  # fmt: skip
    assert [e.step for e in events] == list(range(7))  # the total first, then 6 steps
    assert {e.total_steps for e in events} == {6}

    registry = Registry(tiny_env.data_dir / "registry")
    _reloads(registry.path("model_v1"), tiny_env)
    versions = warehouse.query(
        "SELECT version, status, gate_passed, metrics FROM model_versions FINAL"
    )
    [(name, status, passed, metrics)] = versions.result_rows
    assert (name, status, passed) == ("model_v1", "trained", True)
    assert orjson.loads(metrics)["gate"]["passed"] is True
    [cycle] = cycles(warehouse)
    assert (cycle["reason"], cycle["status"], cycle["version"]) == (
        "threshold",
        "registered",
        "model_v1",
    )
    assert cycle["dataset_sha256"] == report.manifest["dataset_sha256"]  # type: ignore[index]

    text = (report.dataset_dir / DATASET_FILE).read_text()  # type: ignore[operator]
    assert PHONE not in text
    assert EMAIL not in text
    assert "[PHONE]" in text
    assert "[EMAIL]" in text
    assert "先回答您的问题" in text
    assert "sales assistant" not in text  # system and human-agent turns are left out
    assert "Let me help" not in text
    assert set(orjson.loads(text.splitlines()[0])) >= {"messages", "weight", "tier", "split"}

    # A status change is mirrored; a full re-sync is idempotent.
    set_status(warehouse, registry, "model_v1", VersionStatus.CANARY)
    assert sync_registry(warehouse, registry) == 1
    rows = warehouse.query("SELECT status FROM model_versions FINAL").result_rows
    assert rows == [("canary",)]

    # The problems this gate-passed version trained on are not current any more.
    again = run_cycle_now(warehouse, tiny_env, trainer, dry_run=True)
    assert again.status is CycleStatus.NO_DATA
    assert set(again.skipped) == set(seeded["problem"])


def _reloads(adapter_dir: Path, settings: Settings) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.config import TrainConfig

    base = AutoModelForCausalLM.from_pretrained(TrainConfig().base_model)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert settings.data_dir in adapter_dir.parents


def test_dry_run_describes_and_records_nothing(
    warehouse: Warehouse, tiny_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_pool(warehouse)
    report = run_cycle_now(warehouse, tiny_env, TrainerSettings(), dry_run=True)
    assert report.status is CycleStatus.DRY_RUN
    assert report.manifest is not None
    assert report.manifest["counts"]["per_tier"]["problem"] == 8
    assert cycles(warehouse) == []
    assert warehouse.count("model_versions") == 0
    assert not (tiny_env.data_dir / "registry").exists()

    warehouse.close()  # the CLI opens the embedded store itself
    from loraloop.cli.train import train

    train(tiny_env.data_dir, dry_run=True)
    out = capsys.readouterr().out
    for expected in ("core_baseline", "heldout_problem", "sha256"):
        assert expected in out
    assert report.manifest["dataset_sha256"] in out


def test_failing_run_registers_nothing(
    warehouse: Warehouse, tiny_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seed_pool(warehouse)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")  # passes the path check, fails to load
    monkeypatch.setenv("LORALOOP_TRAIN__BASE_MODEL", str(tmp_path / "broken"))
    report = run_cycle_now(warehouse, tiny_env, TrainerSettings(), reason="manual")
    assert report.status is CycleStatus.FAILED
    assert report.version is None
    assert report.error
    assert Registry(tiny_env.data_dir / "registry").versions() == []
    assert warehouse.count("model_versions") == 0
    [cycle] = cycles(warehouse)
    assert (cycle["status"], cycle["reason"]) == ("failed", "manual")
    assert cycle["error"]
    assert cycle["finished_at"] is not None


def test_observations_read_labels_and_rates(warehouse: Warehouse) -> None:
    seed_pool(warehouse)
    rollup = [
        [f"c{i}", "u1", "free", "model_v1", T0, T0, 2, ["complaint"] if i < 3 else [], False,
         "Risk" if i == 0 else "", ["over_promise"] if i == 0 else [], 0, 0, 0, False, 1.0, 1]
        for i in range(10)
    ]  # fmt: skip
    warehouse.insert("conversations", rollup, column_names=CONVERSATION_COLUMNS)
    obs = observe(
        warehouse, TrainerSettings(alert_window_s=10 * 365 * 86_400), T0 + timedelta(days=1)
    )
    assert obs.last_cycle_at is None
    assert obs.new_labels_per_type == {"over_promise": 4, "wrong_CTA_timing": 4}
    assert obs.conversations == 10
    assert obs.flagged == {"detector:complaint": 3, "qa:over_promise": 1}


def test_serve_records_why_a_cycle_started(warehouse: Warehouse, tiny_env: Settings) -> None:
    seed_pool(warehouse, problems=False)
    trainer = TrainerSettings(poll_interval_s=0.05, enabled=True)

    async def scenario() -> list[dict[str, Any]]:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(warehouse, tiny_env, trainer, stop))
        for _ in range(200):
            rows = await warehouse.run(cycles, warehouse)
            if rows and rows[-1]["status"] != "running":
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        return rows

    rows = asyncio.run(scenario())
    assert len(rows) == 1  # the min gap holds the next period-triggered cycle back
    assert (rows[0]["reason"], rows[0]["status"]) == ("period", "no_data")
    assert orjson.loads(rows[0]["details"])["period"]["last_cycle_at"] is None


def _kill_training_child() -> bool:
    """SIGKILL this process's `python -m trainer.worker` child; True when one was found."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and b"trainer.worker" in cmdline:
            os.kill(int(stat.parent.name), signal.SIGKILL)
            return True
    return False


def test_training_killed_midway_registers_nothing_and_the_next_cycle_runs(
    warehouse: Warehouse, tiny_env: Settings
) -> None:
    seed_pool(warehouse)
    killed: list[bool] = []

    def kill_at_second_step(progress: TrainProgress) -> None:
        if progress.step == 2 and not killed:
            killed.append(_kill_training_child())

    first = run_cycle_now(
        warehouse, tiny_env, TrainerSettings(), reason="manual", on_progress=kill_at_second_step
    )
    assert killed == [True]
    assert first.status is CycleStatus.FAILED
    assert first.version is None
    registry = Registry(tiny_env.data_dir / "registry")
    assert registry.versions() == []
    assert warehouse.count("model_versions") == 0

    second = run_cycle_now(warehouse, tiny_env, TrainerSettings(), reason="manual")
    record(
        "fault: training run SIGKILLed mid-way",
        faults_injected="trainer child SIGKILLed at step 2",
        first_cycle=str(first.status),
        versions_registered_by_killed_run=0,  # asserted above, before the second cycle
        second_cycle=str(second.status),
        second_version=second.version.name if second.version else None,
    )
    assert second.status is CycleStatus.REGISTERED, second.error
    assert second.version is not None
    assert [v.name for v in registry.versions()] == [second.version.name]
    assert [c["status"] for c in cycles(warehouse)] == ["failed", "registered"]
