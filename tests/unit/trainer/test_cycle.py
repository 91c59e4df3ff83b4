"""A full train → gate → register cycle on the tiny model, in process and in a worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import torch

from tests.trainer_fixtures import PROBLEM_TYPES, TINY_TRAIN, TOPICS, make_pool
from trainer.config import DatasetConfig, GateConfig, TrainConfig
from trainer.cycle import run_cycle
from trainer.dataset import build_dataset
from trainer.encoding import encode_rows
from trainer.evalset import EvalPrompt, EvaluationSet, write_evaluation_set
from trainer.evaluation import assistant_loss
from trainer.exceptions import TrainingFailedError
from trainer.launcher import train_in_subprocess, train_in_subprocess_async
from trainer.lora import StepInfo
from trainer.manifest import read_rows, write_dataset
from trainer.registry import Registry
from trainer.versions import VersionStatus


def tiny_train_config(checkpoint: Path, **overrides: Any) -> TrainConfig:
    """Hyperparameters that make the tiny random model learn within a few steps."""
    values: dict[str, Any] = {"base_model": str(checkpoint), **TINY_TRAIN}
    return TrainConfig(**(values | overrides))


JUDGES = "tests.unit.trainer.fake_judge"
GATE = GateConfig(judge=f"{JUDGES}:taught", behaviour_max_new_tokens=16)
UNSEEN_TOPICS = TOPICS[12:]  # make_pool() asks about the first 12 topics only
PHRASINGS = ("Tell me about {topic}.", "Tell me about {topic}, please.")
EVALUATION_PER_TYPE = len(UNSEEN_TOPICS) * len(PHRASINGS) // len(PROBLEM_TYPES)


def evaluation_set() -> EvaluationSet:
    """Never-trained questions in the fixture's problem style, two phrasings per topic."""
    return EvaluationSet(
        prompts=tuple(
            EvalPrompt.model_validate(
                {
                    "family": f"eval-{index}",
                    "problem_types": [PROBLEM_TYPES[index % len(PROBLEM_TYPES)]],
                    "messages": [{"role": "user", "content": phrasing.format(topic=topic)}],
                }
            )
            for index, topic in enumerate(UNSEEN_TOPICS)
            for phrasing in PHRASINGS
        )
    )


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    # Problems may hold 60 % of the weight: the tiny model then learns, within seconds, to
    # open unseen problem questions the way the corrected replies do.
    config = DatasetConfig(problem_weight=1.0, problem_share_cap=0.6)
    built = build_dataset(make_pool(), config=config)
    write_dataset(built.rows, built.manifest, out)
    write_evaluation_set(evaluation_set(), out)
    return out


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, dataset_dir: Path
) -> tuple[Registry, str]:
    root = tmp_path_factory.mktemp("registry")
    info = run_cycle(
        dataset_dir,
        registry_root=root,
        data_dir=root,
        train_config=tiny_train_config(tiny_checkpoint, epochs=16),
        gate_config=GATE,
    )
    return Registry(root), info.name


def test_cycle_registers_a_standard_peft_adapter(trained: tuple[Registry, str]) -> None:
    registry, name = trained
    path = registry.path(name)
    assert name == "model_v1"
    names = {p.name for p in path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "manifest.json"} <= names
    assert {"metrics.json", "gate.json", "version.json"} <= names
    config = orjson.loads((path / "adapter_config.json").read_bytes())
    assert (config["r"], config["lora_alpha"], config["modules_to_save"]) == (8, 16, None)
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    info = registry.get(name)
    assert info.status is VersionStatus.TRAINED
    assert info.gate_passed
    assert len(info.base_model["sha256"]) == 64
    gate = orjson.loads((path / "gate.json").read_bytes())
    assert gate["passed"], gate["reasons"]
    assert registry.row(name)["status"] == "trained"


def test_the_gate_judges_unseen_and_baseline_replies_of_both_versions(
    trained: tuple[Registry, str], dataset_dir: Path
) -> None:
    registry, name = trained
    behaviour = orjson.loads((registry.path(name) / "gate.json").read_bytes())["behaviour"]
    heldout = [r for r in read_rows(dataset_dir) if r["split"] == "heldout_problem"]
    regression = [r for r in read_rows(dataset_dir) if r["split"] == "baseline_regression"]
    sources = [p["source"] for p in behaviour["prompts"]]
    assert sources.count("heldout") == len(heldout)
    assert sources.count("evaluation") == len(PROBLEM_TYPES) * EVALUATION_PER_TYPE
    assert sources.count("baseline") == len(regression)
    assert behaviour["targeted"] == behaviour["decisive"] == sorted(PROBLEM_TYPES)
    for problem_type in PROBLEM_TYPES:
        paired = behaviour["paired"][problem_type]
        assert paired["prompts"] >= EVALUATION_PER_TYPE
        assert paired["candidate_pass_rate"] - paired["parent_pass_rate"] >= 0.2
        assert paired["p_value"] <= 0.05
    assert set(behaviour["baseline"]) >= {"prompts", "fixed", "broken", "p_value", "p_worse"}
    assert behaviour["skipped"] == 0
    record = behaviour["prompts"][0]
    assert set(record) >= {
        "family", "problem_types", "source", "parent_pass", "candidate_pass", "parent_reply",
        "candidate_reply",
    }  # fmt: skip


def test_a_judge_that_never_passes_gates_the_version_out(
    tiny_checkpoint: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    info = run_cycle(
        dataset_dir,
        registry_root=tmp_path,
        data_dir=tmp_path,
        train_config=tiny_train_config(tiny_checkpoint),
        gate_config=GATE.model_copy(update={"judge": f"{JUDGES}:never"}),
    )
    gate = orjson.loads((Registry(tmp_path).path(info.name) / "gate.json").read_bytes())
    assert info.status is VersionStatus.GATED_OUT
    assert not gate["passed"]
    assert gate["reasons"][0].startswith("no decisive type (")
    assert gate["behaviour"]["claimed"] == []
    assert any(
        r.startswith(f"{PROBLEM_TYPES[1]}: pass rate 0% -> 0%") and r.endswith("not claimed")
        for r in gate["reasons"]
    )
    # The losses are still measured, as diagnostics that did not save it.
    assert gate["numbers"]["heldout_loss"] < gate["numbers"]["parent_heldout_loss"]
    assert any(r.startswith("diagnostic, not decisive") for r in gate["reasons"])


def test_a_bad_judge_path_fails_before_training_and_registers_nothing(
    dataset_dir: Path, tmp_path: Path
) -> None:
    from trainer.judging import JudgeError

    with pytest.raises(JudgeError, match="no problems"):
        run_cycle(
            dataset_dir,
            registry_root=tmp_path,
            data_dir=tmp_path,
            train_config=TrainConfig(base_model=str(tmp_path / "never-loaded")),
            gate_config=GATE.model_copy(update={"judge": f"{JUDGES}:not_a_judge"}),
        )
    assert Registry(tmp_path).versions() == []


def test_next_cycle_is_gated_against_its_parent_adapter(
    trained: tuple[Registry, str], tiny_checkpoint: Path, dataset_dir: Path
) -> None:
    registry, parent = trained
    progress: list[tuple[int, int]] = []
    info = run_cycle(
        dataset_dir,
        registry_root=registry.root,
        data_dir=registry.root,
        train_config=tiny_train_config(tiny_checkpoint, epochs=1, learning_rate=1e-3),
        gate_config=GATE,
        parent=parent,
        on_gate=lambda done, total: progress.append((done, total)),
    )
    assert (info.name, info.parent) == ("model_v2", parent)
    parent_gate = orjson.loads((registry.path(parent) / "gate.json").read_bytes())
    gate = orjson.loads((registry.path(info.name) / "gate.json").read_bytes())
    # The parent answered these prompts as cycle 1's candidate: its replies are read back
    # from its gate_replies.json, only the candidate's are generated.
    asked = len(gate["behaviour"]["prompts"])
    assert progress[-1] == (asked, asked)
    assert [p["parent_reply"] for p in gate["behaviour"]["prompts"]] == [
        p["candidate_reply"] for p in parent_gate["behaviour"]["prompts"]
    ]
    # The parent's numbers are the parent adapter's, not the bare base model's.
    assert gate["numbers"]["parent_heldout_loss"] == pytest.approx(
        parent_gate["numbers"]["heldout_loss"], rel=1e-4
    )
    # A barely trained child does not beat its parent: it is registered but gated out.
    assert info.status is VersionStatus.GATED_OUT
    assert not gate["passed"]


def test_reloaded_adapter_lowers_heldout_loss(
    trained: tuple[Registry, str], tiny_checkpoint: Path, tiny_tokenizer: Any, dataset_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    registry, name = trained
    rows = [r for r in read_rows(dataset_dir) if r["split"] == "heldout_problem"]
    heldout = encode_rows(tiny_tokenizer, rows, max_seq_len=128)
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    pad = tiny_tokenizer.pad_token_id
    before = assistant_loss(base, heldout, pad_id=pad, batch_size=8)
    model = PeftModel.from_pretrained(base, str(registry.path(name)))
    after = assistant_loss(model, heldout, pad_id=pad, batch_size=8)
    assert before is not None
    assert after is not None
    assert after < before * 0.8


def test_training_changes_only_the_adapter(
    tiny_checkpoint: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).state_dict()
    seen: dict[str, Any] = {}

    def capture(step: StepInfo) -> None:
        seen["step"] = step

    info = run_cycle(
        dataset_dir,
        registry_root=tmp_path,
        data_dir=tmp_path,
        train_config=tiny_train_config(tiny_checkpoint, epochs=1),
        gate_config=GATE,
        on_step=capture,
    )
    from safetensors.torch import load_file

    adapter = load_file(str(Registry(tmp_path).path(info.name) / "adapter_model.safetensors"))
    lora_b = [t for key, t in adapter.items() if "lora_B" in key]
    assert lora_b
    assert all(float(t.abs().sum()) > 0 for t in lora_b)
    reloaded = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).state_dict()
    for key, tensor in original.items():
        torch.testing.assert_close(reloaded[key], tensor, rtol=0, atol=0)
    assert seen["step"].step >= 1


def test_failed_run_registers_nothing_and_its_name_is_never_reused(
    tiny_checkpoint: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    def explode(step: StepInfo) -> None:
        if step.step == 2:
            msg = "simulated crash mid-training"
            raise RuntimeError(msg)

    config = tiny_train_config(tiny_checkpoint, epochs=1, grad_accum=1)
    with pytest.raises(RuntimeError, match="simulated"):
        run_cycle(
            dataset_dir,
            registry_root=tmp_path,
            data_dir=tmp_path,
            train_config=config,
            gate_config=GATE,
            on_step=explode,
        )
    registry = Registry(tmp_path)
    assert registry.versions() == []
    assert not (tmp_path / "model_v1").exists()
    assert list((tmp_path / ".staging").iterdir()) == []
    assert registry.reserve() == "model_v2"


def test_worker_subprocess_trains_and_a_bad_config_registers_nothing(
    tiny_checkpoint: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    bad = tiny_train_config(tmp_path / "no-such-checkpoint")
    with pytest.raises(TrainingFailedError, match="not a local checkpoint") as caught:
        train_in_subprocess(
            dataset_dir, registry_root=tmp_path, data_dir=tmp_path, train_config=bad
        )
    assert caught.value.returncode == 1
    assert Registry(tmp_path).versions() == []
    info = train_in_subprocess(
        dataset_dir,
        registry_root=tmp_path,
        data_dir=tmp_path,
        train_config=tiny_train_config(tiny_checkpoint, epochs=1),
        gate_config=GATE,
    )
    assert info.name == "model_v1"
    assert [v.name for v in Registry(tmp_path).versions()] == ["model_v1"]


def test_async_launcher_reports_a_failed_worker_without_blocking(
    dataset_dir: Path, tmp_path: Path
) -> None:
    async def launch() -> tuple[int, BaseException | None]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        bad = TrainConfig(base_model=str(tmp_path / "missing"), progress=False)
        try:
            await train_in_subprocess_async(
                dataset_dir, registry_root=tmp_path, data_dir=tmp_path, train_config=bad
            )
        except TrainingFailedError as error:
            return ticks, error
        finally:
            ticker.cancel()
        return ticks, None

    ticks, error = asyncio.run(launch())
    assert isinstance(error, TrainingFailedError)
    assert ticks > 0  # the event loop kept running while the worker did
    assert Registry(tmp_path).versions() == []


def test_the_bare_base_answers_a_recurring_gate_from_its_cache(
    trained: tuple[Registry, str], tiny_checkpoint: Path, dataset_dir: Path
) -> None:
    registry, _ = trained
    (cached,) = (registry.root / "cache" / "base-gate-replies").glob("*.json")
    first = orjson.loads((registry.path("model_v1") / "gate.json").read_bytes())
    assert len(orjson.loads(cached.read_bytes())) == len(first["behaviour"]["prompts"])
    progress: list[tuple[int, int]] = []
    info = run_cycle(
        dataset_dir,
        registry_root=registry.root,
        data_dir=registry.root,
        train_config=tiny_train_config(tiny_checkpoint, epochs=1),
        gate_config=GATE,
        on_gate=lambda done, total: progress.append((done, total)),
    )
    gate = orjson.loads((registry.path(info.name) / "gate.json").read_bytes())
    asked = len(gate["behaviour"]["prompts"])
    assert progress[-1] == (asked, asked)  # the base's replies came from the cache
    assert [p["parent_reply"] for p in gate["behaviour"]["prompts"]] == [
        p["parent_reply"] for p in first["behaviour"]["prompts"]
    ]
