"""A chat template that cannot prompt a reply is refused before training, naming the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer_fixtures import FAMILIES, family_checkpoint, make_pool, tiny_train_config
from trainer.config import DatasetConfig, GateConfig
from trainer.cycle import run_cycle
from trainer.dataset import build_dataset
from trainer.encoding import check_chat_template
from trainer.exceptions import ChatTemplateError, GenerationPromptError, TrainerError
from trainer.lora import StepInfo
from trainer.manifest import write_dataset
from trainer.registry import Registry
from trainer.tiny_model import CHAT_FORMATS

#: ChatML without its ``add_generation_prompt`` branch: nothing opens the assistant turn.
NO_MARKER = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
)
GATE = GateConfig(judge="tests.unit.trainer.fake_judge:taught", behaviour_max_new_tokens=4)


@pytest.fixture(scope="module")
def no_marker_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return family_checkpoint(tmp_path_factory.mktemp("no-marker"), "qwen2", chat_template=NO_MARKER)


def test_every_built_in_format_has_a_generation_marker(
    tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any
) -> None:
    from transformers import AutoTokenizer

    check_chat_template(tiny_tokenizer, source="chatml")
    for family in FAMILIES:
        path = family_checkpoint(tmp_path_factory.mktemp(family), family)
        check_chat_template(AutoTokenizer.from_pretrained(path), source=family)
    assert set(CHAT_FORMATS) == {"chatml", "qwen2", "llama3"}


def test_a_template_without_a_generation_marker_names_the_fix(
    no_marker_checkpoint: Path,
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(no_marker_checkpoint)
    with pytest.raises(GenerationPromptError) as caught:
        check_chat_template(tokenizer, source=str(no_marker_checkpoint))
    message = str(caught.value)
    assert isinstance(caught.value, TrainerError)
    assert str(no_marker_checkpoint) in message
    assert "no generation marker" in message
    assert "add_generation_prompt" in message
    assert "chat_template.jinja" in message  # where to fix it
    assert "instruct checkpoint" in message  # or what to use instead


def test_a_tokenizer_without_any_chat_template_is_refused(no_marker_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(no_marker_checkpoint)
    tokenizer.chat_template = None
    with pytest.raises(ChatTemplateError, match="has no chat template: give the tokenizer"):
        check_chat_template(tokenizer, source="bare")


def test_the_cycle_refuses_it_before_training_and_registers_nothing(
    no_marker_checkpoint: Path, tmp_path: Path
) -> None:
    dataset_dir = tmp_path / "dataset"
    built = build_dataset(make_pool(baselines=12, problems=8), config=DatasetConfig())
    write_dataset(built.rows, built.manifest, dataset_dir)
    steps: list[StepInfo] = []
    with pytest.raises(GenerationPromptError, match="no generation marker"):
        run_cycle(
            dataset_dir,
            registry_root=tmp_path / "registry",
            data_dir=tmp_path,
            train_config=tiny_train_config(no_marker_checkpoint, epochs=1),
            gate_config=GATE,
            on_step=steps.append,
        )
    assert steps == []
    assert Registry(tmp_path / "registry").versions() == []
