"""Real architectures through the whole cycle: a tiny random Qwen2 and Llama (Llama 3
template), built offline, encode with their own chat templates, train, gate, register
and reload from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.trainer_fixtures import FAMILIES, family_checkpoint, make_pool, tiny_train_config
from trainer.base_model import weights_sha256
from trainer.config import DatasetConfig, GateConfig
from trainer.cycle import run_cycle
from trainer.dataset import SPLIT_HELDOUT, SPLIT_TRAIN, build_dataset
from trainer.encoding import IGNORE_INDEX, encode_rows
from trainer.evaluation import assistant_loss
from trainer.manifest import read_rows, write_dataset
from trainer.registry import Registry
from trainer.versions import VersionStatus

GATE = GateConfig(judge="tests.unit.trainer.fake_judge:taught", behaviour_max_new_tokens=4)
MAX_SEQ_LEN = 128
#: The model class each family must load as, and the marker that ends an assistant turn.
EXPECTED = {
    "qwen2": ("Qwen2ForCausalLM", "<|im_end|>"),
    "llama3": ("LlamaForCausalLM", "<|eot_id|>"),
}
#: What only the family's own template writes into a rendered conversation.
TEMPLATE_MARK = {
    "qwen2": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
}
#: The loss the gate recorded and the reloaded adapter's agree to this relative tolerance
#: (the same fp32 weights, batches of other sizes).
RELOAD_RTOL = 1e-3


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    built = build_dataset(make_pool(baselines=12, problems=8), config=DatasetConfig())
    write_dataset(built.rows, built.manifest, out)
    return out


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def cycle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path
) -> tuple[str, Path, Registry, str]:
    """(family, checkpoint, registry, version) after one cycle on that family's model."""
    family: str = request.param
    checkpoint = family_checkpoint(tmp_path_factory.mktemp(f"tiny-{family}"), family)
    root = tmp_path_factory.mktemp(f"registry-{family}")
    info = run_cycle(
        dataset_dir,
        registry_root=root,
        data_dir=root,
        train_config=tiny_train_config(checkpoint, epochs=2),
        gate_config=GATE,
    )
    return family, checkpoint, Registry(root), info.name


def test_each_family_encodes_with_its_own_chat_template(
    cycle: tuple[str, Path, Registry, str], dataset_dir: Path
) -> None:
    from transformers import AutoTokenizer

    family, checkpoint, _, _ = cycle
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    row = next(r for r in read_rows(dataset_dir) if r["split"] == SPLIT_TRAIN)
    (sample,) = encode_rows(tokenizer, [row], max_seq_len=MAX_SEQ_LEN)
    text = str(tokenizer.decode(sample.input_ids))
    trained = str(tokenizer.decode([t for t in sample.labels if t != IGNORE_INDEX]))
    assert text.startswith(TEMPLATE_MARK[family])
    # Exactly the reply and the family's end-of-turn marker carry loss, no role header.
    reply = row["messages"][-1]["content"]
    assert trained == reply + EXPECTED[family][1]


def test_each_family_trains_gates_registers_and_reloads(
    cycle: tuple[str, Path, Registry, str], dataset_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family, checkpoint, registry, name = cycle
    info = registry.get(name)
    assert name == "model_v1"
    assert info.status in {VersionStatus.TRAINED, VersionStatus.GATED_OUT}
    assert info.base_model["sha256"] == weights_sha256(checkpoint)
    gate: dict[str, Any] = orjson.loads((registry.path(name) / "gate.json").read_bytes())
    prompts = gate["behaviour"]["prompts"]
    assert prompts
    assert all(isinstance(p["candidate_reply"], str) for p in prompts)

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    base = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert type(base).__name__ == EXPECTED[family][0]
    heldout_rows = [r for r in read_rows(dataset_dir) if r["split"] == SPLIT_HELDOUT]
    heldout = encode_rows(tokenizer, heldout_rows, max_seq_len=MAX_SEQ_LEN)
    pad = tokenizer.pad_token_id
    before = assistant_loss(base, heldout, pad_id=pad, batch_size=len(heldout))
    model = PeftModel.from_pretrained(base, str(registry.path(name)))
    after = assistant_loss(model, heldout, pad_id=pad, batch_size=len(heldout))
    assert before is not None
    assert after is not None
    assert after < before
    assert after == pytest.approx(gate["numbers"]["heldout_loss"], rel=RELOAD_RTOL)
