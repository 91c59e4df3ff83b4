"""The gate's generation on the tiny model: batched = unbatched, progress, progress lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer_fixtures import make_pool, tiny_train_config
from tests.unit.trainer.fake_judge import taught
from trainer.behaviour import GatePrompt, Source
from trainer.config import GateConfig
from trainer.evaluation import generate_replies, merged_adapter, probe_prompt
from trainer.gate import GatePrompts, run_gate
from trainer.launcher import PROGRESS_PREFIX, STAGE_GATE, STAGE_TRAIN, TrainProgress

MAX_NEW = 16


def _prompts() -> list[list[Any]]:
    """Prompts of different lengths, one of them with an earlier exchange."""
    prompts = [probe_prompt(s.model_dump()["messages"]) for s in make_pool(6, 4)]
    prompts = [[{"role": m["role"], "content": m["content"]} for m in p] for p in prompts]
    long = [
        {"role": "user", "content": "How much is the pro plan?"},
        {"role": "assistant", "content": "The pro plan costs 12 dollars a month."},
        {"role": "user", "content": "And the family plan, for four people?"},
    ]
    return [*prompts, long, [{"role": "user", "content": "Hi"}]]


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    model.eval()  # type: ignore[no-untyped-call]
    return model, AutoTokenizer.from_pretrained(tiny_checkpoint)


def test_left_padded_batches_decode_like_single_prompts(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompts = _prompts()
    lengths = {
        len(
            tokenizer(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True))[
                "input_ids"
            ]
        )
        for p in prompts
    }
    assert len(lengths) > 2  # the batch really is padded
    side = tokenizer.padding_side
    alone = generate_replies(model, tokenizer, prompts, max_new=MAX_NEW, batch_size=1)
    batches: list[int] = []
    batched = generate_replies(
        model, tokenizer, prompts, max_new=MAX_NEW, batch_size=5, on_batch=batches.append
    )
    assert batched == alone
    assert all(alone)
    assert batches == [5, 5, 2]
    assert tokenizer.padding_side == side


def test_a_merged_adapter_answers_like_the_unmerged_one_and_is_unmerged_after(
    tiny_checkpoint: Path, tiny: tuple[Any, Any]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.lora import attach_adapter

    _, tokenizer = tiny
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    model = attach_adapter(base, tiny_train_config(tiny_checkpoint))
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # a trained-looking adapter: lora_B = 0 would change nothing
            torch.nn.init.normal_(param, std=0.5)
    model.eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = _prompts()
    unmerged = generate_replies(model, tokenizer, prompts, max_new=MAX_NEW, batch_size=4)
    with model.disable_adapter():
        bare = generate_replies(model, tokenizer, prompts, max_new=MAX_NEW, batch_size=4)
    assert unmerged != bare  # the adapter changes the replies
    with merged_adapter(model) as merged:
        assert any(getattr(m, "merged", False) for m in merged.modules())
        assert generate_replies(merged, tokenizer, prompts, max_new=MAX_NEW, batch_size=4) == (
            unmerged
        )
    assert not any(getattr(m, "merged", False) for m in model.modules())
    for name, param in model.named_parameters():
        assert torch.allclose(param, before[name], atol=1e-6), name


def test_run_gate_reports_generation_progress(tiny_checkpoint: Path, tiny: tuple[Any, Any]) -> None:
    from transformers import AutoModelForCausalLM

    from trainer.lora import attach_adapter

    _, tokenizer = tiny
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    model = attach_adapter(base, tiny_train_config(tiny_checkpoint))
    asked = [
        GatePrompt(p, f"f{i}", ("over_promise",), Source.EVALUATION)
        for i, p in enumerate(_prompts())
    ]
    prompts = GatePrompts(unseen=asked, baseline=asked[:3], targeted=frozenset({"over_promise"}))
    seen: list[tuple[int, int]] = []
    result = run_gate(
        model,
        tokenizer,
        prompts=prompts,
        judge=taught(),
        heldout=[],
        baseline=[],
        config=GateConfig(eval_batch_size=4, behaviour_max_new_tokens=4),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    total = 2 * (len(asked) + 3)
    assert seen[0] == (0, total)
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    # A fresh adapter (lora_B = 0) answers exactly like its parent, the bare base: no gain.
    assert all(r.parent_reply == r.candidate_reply for r in result.behaviour.prompts)
    assert not result.passed


def test_progress_lines_carry_the_stage_and_old_lines_are_training_steps() -> None:
    gate = TrainProgress(step=3, total_steps=10, stage=STAGE_GATE)
    assert TrainProgress.parse(gate.line().encode()) == gate
    old = (PROGRESS_PREFIX + '{"step": 2, "total_steps": 6, "loss": 1.5}\n').encode()
    assert TrainProgress.parse(old) == TrainProgress(step=2, total_steps=6, loss=1.5)
    assert TrainProgress.parse(old).stage == STAGE_TRAIN  # type: ignore[union-attr]


def test_the_parent_answers_from_its_own_gate_replies_and_only_new_prompts_are_generated(
    tiny_checkpoint: Path, tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    import orjson
    from transformers import AutoModelForCausalLM

    from trainer.gate import REPLIES_FILE, read_replies, reply_key
    from trainer.lora import attach_adapter

    _, tokenizer = tiny
    model = attach_adapter(
        AutoModelForCausalLM.from_pretrained(tiny_checkpoint), tiny_train_config(tiny_checkpoint)
    )
    asked = [
        GatePrompt(p, f"f{i}", ("over_promise",), Source.EVALUATION)
        for i, p in enumerate(_prompts())
    ]
    config = GateConfig(eval_batch_size=4, behaviour_max_new_tokens=4)
    first = run_gate(
        model,
        tokenizer,
        prompts=GatePrompts(unseen=asked, baseline=[], targeted=frozenset({"over_promise"})),
        judge=taught(),
        heldout=[],
        baseline=[],
        config=config,
    )
    assert set(first.replies) == {reply_key(p.messages, 4) for p in asked}
    assert "replies" not in first.model_dump(mode="json")  # gate.json stays the evidence
    assert set(first.parent_replies) == set(first.replies)  # the base's, to keep
    parent_dir = tmp_path / "model_v1"
    model.save_pretrained(str(parent_dir))
    known = {key: f"remembered {i}" for i, key in enumerate(first.replies)}
    (parent_dir / REPLIES_FILE).write_bytes(orjson.dumps(known))
    assert read_replies(parent_dir / REPLIES_FILE) == known
    assert read_replies(tmp_path / "missing.json") == {}
    seen: list[tuple[int, int]] = []
    new = GatePrompt([{"role": "user", "content": "A prompt no version answered yet"}], "fx",
                     ("over_promise",), Source.EVALUATION)  # fmt: skip
    again = run_gate(
        model,
        tokenizer,
        prompts=GatePrompts(
            unseen=[*asked, new], baseline=[], targeted=frozenset({"over_promise"})
        ),
        judge=taught(),
        heldout=[],
        baseline=[],
        config=config,
        parent_dir=parent_dir,
        on_progress=lambda done, total: seen.append((done, total)),
        parent_replies=known,
    )
    assert seen[-1] == (len(asked) + 2, len(asked) + 2)  # the candidate's all, the parent's one
    replies = [r.parent_reply for r in again.behaviour.prompts]
    assert replies[: len(asked)] == [f"remembered {i}" for i in range(len(asked))]
    assert not replies[-1].startswith("remembered")
