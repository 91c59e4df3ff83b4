"""The training service on a real chdb warehouse and the tiny model.

The pool is seeded the way capture and the console write it: ``samples`` rows,
statuses through ``sample_transitions``, labels in ``sample_labels``, transcripts
in ``turns`` (Chinese and English, with phone numbers and e-mail addresses). Each
problem asks about its own topic (its own prompt family); an evaluation set of
never-trained topics and the marker judge of ``tests.unit.trainer.fake_judge``
let the behavioural gate judge the tiny model.
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

from analytics.flags import FlagKind, read_flags
from analytics.rows import COLUMNS, CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from analytics.warehouse import Warehouse
from loraloop.settings import Settings
from tests.reliability.figures import record
from tests.trainer_fixtures import TINY_TRAIN, tiny_checkpoint
from trainer.config import DatasetConfig
from trainer.cycle_log import CycleStatus
from trainer.evalset import EVALUATION_FILE, EvalPrompt, encode_evaluation_set
from trainer.launcher import STAGE_TRAIN, TrainProgress
from trainer.manifest import DATASET_FILE
from trainer.mirror import set_status, sync_registry
from trainer.observe import observe
from trainer.registry import Registry
from trainer.service import CycleConfigs, run_cycle_now, serve
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
PROBLEM_TYPES = ["over_promise", "wrong_CTA_timing"]
TOPICS = [
    "the refund policy", "weekend classes", "the completion certificate", "job placement",
    "mentor sessions", "installment payments", "the final project", "group discounts",
]  # fmt: skip
#: Never-trained topics of the evaluation set, six per problem type.
EVALUATION_TOPICS = {
    "over_promise": [
        "the study schedule", "course materials", "the trial week", "office hours",
        "the alumni network", "exam retakes",
    ],
    "wrong_CTA_timing": [
        "team licences", "offline downloads", "the beginner track", "career coaching",
        "the mobile app", "holiday breaks",
    ],
}  # fmt: skip
EVALUATION_PROMPTS = sum(len(topics) for topics in EVALUATION_TOPICS.values())
JUDGE = "tests.unit.trainer.fake_judge:taught"
#: Optimizer steps of each training run.
STEPS = 40


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
        topic = TOPICS[index % len(TOPICS)]
        turns = [
            ("system", "You are a sales assistant."),
            ("user", f"Tell me about {topic}. 我想了解pro套餐，电话{PHONE}"),
            ("assistant", "pro套餐很好。"),
            ("user", f"Can you email me at {EMAIL}? Question {index}"),
            ("assistant", "Buy now! Guaranteed to fix everything!"),
            ("user", "That is not what I asked."),
            ("human_agent", "Let me help you."),
        ]
        cid = self.conversation(turns, signal_turn=5)
        corrected = {
            "over_promise": f"I cannot promise that, but I can explain {topic}.",
            "wrong_CTA_timing": "Let me answer your question first, then we can talk about "
            f"{topic}. 先回答您的问题。",
        }[problem_type]
        return self.sample(cid, ["problem"], [problem_type], corrected, labelled=labelled)

    def recurring(self, index: int) -> str:
        """A new problem whose conversation and answer are baseline ``index``'s, verbatim."""
        question, answer = BASELINE_QUESTIONS[index % 2]
        plan, n = PLANS[index % len(PLANS)], index + 5
        turns = [("user", question.format(plan=plan) + f" #{index}"), ("assistant", "hmm")]
        cid = self.conversation(turns, signal_turn=1)
        corrected = answer.format(plan=plan, n=n)
        return self.sample(cid, ["problem"], ["missing_knowledge"], corrected, labelled=T0)


def seed_pool(warehouse: Warehouse, *, problems: bool = True) -> dict[str, list[str]]:
    """12 baselines over the three tiers and, with ``problems``, 8 problems of two types."""
    seeder = PoolSeeder(warehouse)
    tiers = ["core_baseline", "secondary_baseline", "candidate_baseline"]
    seeded = {"baseline": [seeder.baseline(i, tiers[i % 3]) for i in range(12)]}
    if problems:
        seeded["problem"] = [seeder.problem(i, PROBLEM_TYPES[i % 2]) for i in range(8)]
    return seeded


def write_evaluation_set(path: Path) -> Path:
    """Never-trained topics per problem type, as the trainer's evaluation set (in the
    shape of the seeded problem conversations, as a deployment's traffic would be)."""
    prompts = [
        EvalPrompt.model_validate(
            {
                "family": f"eval-{problem_type}-{i}",
                "problem_types": [problem_type],
                "messages": [
                    {
                        "role": "user",
                        "content": f"Tell me about {topic}. 我想了解pro套餐，电话[PHONE]",
                    },
                    {"role": "assistant", "content": "pro套餐很好。"},
                    {"role": "user", "content": f"Can you email me at [EMAIL]? Question {i}"},
                ],
            }
        )
        for problem_type in PROBLEM_TYPES
        for i, topic in enumerate(EVALUATION_TOPICS[problem_type])
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_evaluation_set(prompts))
    return path


@pytest.fixture
def tiny_env(
    isolated_env: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings on a fresh data dir; the tiny model and a few steps through the environment."""
    monkeypatch.setenv("LORALOOP_TRAIN__BASE_MODEL", str(tiny_checkpoint))
    for key, value in (TINY_TRAIN | {"max_steps": STEPS, "epochs": STEPS}).items():
        monkeypatch.setenv(f"LORALOOP_TRAIN__{key.upper()}", str(value).lower())
    monkeypatch.setenv("LORALOOP_GATE__JUDGE", JUDGE)
    monkeypatch.setenv("LORALOOP_GATE__BEHAVIOUR_MAX_NEW_TOKENS", "16")
    monkeypatch.setenv("LORALOOP_DATASET__PROBLEM_WEIGHT", "1.0")
    # Problems hold half the influence, so the tiny model learns them within STEPS.
    monkeypatch.setenv("LORALOOP_DATASET__PROBLEM_SHARE_CAP", "0.5")
    evaluation = write_evaluation_set(isolated_env / "evaluation" / "set.jsonl")
    monkeypatch.setenv("LORALOOP_DATASET__EVALUATION_SET", str(evaluation))
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
    assert report.status is CycleStatus.REGISTERED, report.error or _gate_reasons(tiny_env)
    assert report.version is not None
    assert (report.version.name, report.version.gate_passed) == ("model_v1", True)
    assert report.pool == {
        "candidate_baseline": 4, "core_baseline": 4, "problem": 8, "secondary_baseline": 4,
        "skipped": 0,
    }  # fmt: skip
    training = [e for e in events if e.stage == STAGE_TRAIN]
    assert [e.step for e in training] == list(range(STEPS + 1))  # the total first, then steps
    assert {e.total_steps for e in training} == {STEPS}

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

    # The cycle's row keeps the manifest's sample lists apart.
    manifest = report.manifest or {}
    assert cycle["trained_ids"] == manifest["trained_sample_ids"]
    assert cycle["heldout_ids"] == manifest["heldout_sample_ids"]
    assert cycle["regression_ids"] == manifest["regression_sample_ids"]
    assert cycle["duplicate_ids"] == sorted(manifest["duplicates_dropped"])
    assert cycle["evaluation_ids"] == manifest["evaluation_excluded_ids"]
    assert set(manifest["heldout_sample_ids"]) <= set(seeded["problem"])
    assert set(manifest["trained_sample_ids"]).isdisjoint(manifest["heldout_sample_ids"])
    assert (report.dataset_dir / EVALUATION_FILE).is_file()  # type: ignore[operator]
    assert manifest["evaluation_set"]["prompts"] == EVALUATION_PROMPTS

    # Problems stay in training while their status is problem; the gate-passed versions
    # that trained each one are counted (here one is already enough to down-weight).
    config = DatasetConfig(unsolved_cycles_before_downweight=1)
    again = run_cycle_now(
        warehouse, tiny_env, trainer, dry_run=True, configs=CycleConfigs(dataset=config)
    )
    assert again.status is CycleStatus.DRY_RUN
    assert again.skipped == {}
    assert again.manifest is not None
    assert again.manifest["counts"]["per_tier"]["problem"] == len(seeded["problem"])
    trained_before = set(manifest["trained_sample_ids"]) & set(seeded["problem"])
    assert set(again.manifest["downweighted"]) == trained_before & set(
        again.manifest["trained_sample_ids"]
    )


def _gate_reasons(settings: Settings) -> list[str]:
    """The gate's reasons of every registered version (what a failed assertion shows)."""
    registry = Registry(settings.data_dir / "registry")
    reasons: list[str] = []
    for info in registry.versions():
        gate = orjson.loads((registry.path(info.name) / "gate.json").read_bytes())
        reasons += [f"{info.name}: {reason}" for reason in gate.get("reasons", [])]
    return reasons


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
    seeded = seed_pool(warehouse)
    recurring = PoolSeeder(warehouse)
    recurring.n = 100  # conversation ids apart from the seeded ones
    problem = recurring.recurring(3)
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
    # The recurring problem trains; the baseline it duplicates is flagged, not trained twice.
    baseline = seeded["baseline"][3]
    assert report.manifest is not None
    assert report.manifest["flagged_baseline"] == {baseline: problem}
    assert problem in report.manifest["trained_sample_ids"] + report.manifest["heldout_sample_ids"]
    [flag] = read_flags(warehouse, kind=FlagKind.NOT_LEARNED)
    assert (flag.sample_id, flag.actor) == (baseline, "trainer")
    assert problem in flag.reason


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
    assert second.status is CycleStatus.REGISTERED, second.error or _gate_reasons(tiny_env)
    assert second.version is not None
    assert [v.name for v in registry.versions()] == [second.version.name]
    assert [c["status"] for c in cycles(warehouse)] == ["failed", "registered"]
