"""Assistant-only labels built from the chat template."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.encoding import IGNORE_INDEX, encode_row
from trainer.exceptions import EmptyAssistantMaskError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "How much is the basic plan?"},
    {"role": "assistant", "content": "The basic plan costs 5 dollars."},
    {"role": "user", "content": "And the pro plan?"},
    {"role": "assistant", "content": "The pro plan costs 9 dollars a month."},
]


def _trained_text(tokenizer: Any, row: dict[str, Any], **kwargs: Any) -> str:
    sample = encode_row(tokenizer, row, max_seq_len=256, **kwargs)
    ids = [i for i, label in zip(sample.input_ids, sample.labels, strict=True) if label != -100]
    return str(tokenizer.decode(ids))


def test_only_the_final_assistant_reply_and_its_end_marker_are_trained(
    tiny_tokenizer: Any,
) -> None:
    row = {"messages": CONVERSATION, "sample_id": "s1", "weight": 0.7}
    assert _trained_text(tiny_tokenizer, row) == "The pro plan costs 9 dollars a month.<|im_end|>"
    sample = encode_row(tiny_tokenizer, row, max_seq_len=256)
    assert sample.weight == 0.7
    assert sample.labels[0] == IGNORE_INDEX


def test_all_turns_trains_every_assistant_reply(tiny_tokenizer: Any) -> None:
    row = {"messages": CONVERSATION, "sample_id": "s1"}
    text = _trained_text(tiny_tokenizer, row, all_turns=True)
    assert text == (
        "The basic plan costs 5 dollars.<|im_end|>The pro plan costs 9 dollars a month.<|im_end|>"
    )


def test_labels_equal_input_ids_on_trained_tokens(tiny_tokenizer: Any) -> None:
    sample = encode_row(tiny_tokenizer, {"messages": CONVERSATION}, max_seq_len=256)
    pairs = [(i, lab) for i, lab in zip(sample.input_ids, sample.labels, strict=True)]
    assert all(lab in (IGNORE_INDEX, i) for i, lab in pairs)
    assert sample.assistant_tokens > 0


def test_truncation_keeps_the_target(tiny_tokenizer: Any) -> None:
    sample = encode_row(tiny_tokenizer, {"messages": CONVERSATION}, max_seq_len=16)
    assert len(sample.input_ids) == 16
    trained = [label for label in sample.labels if label != IGNORE_INDEX]
    assert tiny_tokenizer.decode(trained).endswith("a month.<|im_end|>")


def test_a_row_without_assistant_reply_names_the_sample(tiny_tokenizer: Any) -> None:
    row = {"messages": CONVERSATION[:2], "sample_id": "no-reply-7"}
    with pytest.raises(EmptyAssistantMaskError, match="no-reply-7") as caught:
        encode_row(tiny_tokenizer, row, max_seq_len=256)
    assert caught.value.sample_id == "no-reply-7"
