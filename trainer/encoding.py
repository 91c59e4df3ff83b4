"""Chat rows → token ids and labels, with the loss on assistant tokens only.

The chat template is rendered as text; each trained assistant turn's character
span is the difference between the conversation rendered up to it (with the
generation prompt) and rendered through it, so the role header is not trained
and the end-of-turn marker is (trailing whitespace after it is not). Token
offsets map the spans onto tokens; every other token gets ``IGNORE_INDEX``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainer.exceptions import ChatTemplateError, EmptyAssistantMaskError, GenerationPromptError

IGNORE_INDEX = -100
ASSISTANT = "assistant"
#: The conversation :func:`check_chat_template` renders with and without the prompt.
PROBE: tuple[Mapping[str, str], ...] = ({"role": "user", "content": "Hello?"},)
TEMPLATE_FIX = (
    "give the tokenizer a chat template that opens an assistant turn when "
    "add_generation_prompt is true (e.g. {% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %} for ChatML) in the checkpoint's "
    "chat_template.jinja or tokenizer_config.json, or use the model's instruct checkpoint, "
    "whose template has one"
)


@dataclass(frozen=True)
class EncodedSample:
    """One tokenized row ready for collation."""

    sample_id: str
    input_ids: list[int]
    labels: list[int]
    weight: float

    @property
    def assistant_tokens(self) -> int:
        """Tokens that carry loss (after the causal shift, the first label never does)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], *, prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=prompt
    )
    return str(text)


def check_chat_template(tokenizer: Any, *, source: str) -> None:
    """Refuse a tokenizer without a chat template or whose template has no generation marker.

    Encoding could still find the assistant spans without the marker, but the gate,
    canary and serving prompt a reply with ``add_generation_prompt=True``: with a
    template that ignores it the model would continue the user's turn, and training
    would run for nothing. Checked when the base model is loaded, before training.
    """
    if not getattr(tokenizer, "chat_template", None):
        msg = f"the tokenizer of {source} has no chat template: {TEMPLATE_FIX}"
        raise ChatTemplateError(msg)
    if _render(tokenizer, PROBE, prompt=True) == _render(tokenizer, PROBE, prompt=False):
        msg = (
            f"the chat template of {source} has no generation marker (add_generation_prompt "
            f"changes nothing, so no assistant reply can be prompted): {TEMPLATE_FIX}"
        )
        raise GenerationPromptError(msg)


def assistant_spans(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], *, all_turns: bool
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the trained assistant turns."""
    full = _render(tokenizer, messages, prompt=False)
    indices = [i for i, m in enumerate(messages) if m["role"] == ASSISTANT]
    spans = []
    for index in indices if all_turns else indices[-1:]:
        before = _render(tokenizer, messages[:index], prompt=True) if index else ""
        through = _render(tokenizer, messages[: index + 1], prompt=False)
        if not full.startswith(through):
            msg = "the chat template does not render conversations prefix-consistently"
            raise ChatTemplateError(msg)
        if before and through.startswith(before):
            start = len(before)
        else:
            start = through.rfind(messages[index]["content"])
        if start < 0:
            msg = "cannot locate an assistant turn in the rendered chat template"
            raise ChatTemplateError(msg)
        spans.append((start, len(through.rstrip())))
    return full, spans


def encode_row(
    tokenizer: Any, row: Mapping[str, Any], *, max_seq_len: int, all_turns: bool = False
) -> EncodedSample:
    """Tokenize one dataset row; raise if no assistant token carries loss."""
    sample_id = str(row.get("sample_id", "?"))
    try:
        text, spans = assistant_spans(tokenizer, row["messages"], all_turns=all_turns)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (ChatTemplateError, NotImplementedError) as error:
        msg = f"sample {sample_id}: {error}; use a fast tokenizer with a chat template"
        raise ChatTemplateError(msg) from error
    ids: list[int] = list(encoded["input_ids"])
    labels = [
        token if any(lo <= start < hi for lo, hi in spans) and end > start else IGNORE_INDEX
        for token, (start, end) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    ids, labels = ids[-max_seq_len:], labels[-max_seq_len:]
    sample = EncodedSample(sample_id, ids, labels, float(row.get("weight", 1.0)))
    if sample.assistant_tokens == 0:
        msg = (
            f"sample {sample_id} has no assistant token to train on: its final message must be "
            "a non-empty assistant reply that fits in max_seq_len"
        )
        raise EmptyAssistantMaskError(msg, sample_id=sample_id)
    return sample


def encode_rows(
    tokenizer: Any, rows: Sequence[Mapping[str, Any]], *, max_seq_len: int, all_turns: bool = False
) -> list[EncodedSample]:
    """Tokenize every row (see :func:`encode_row`)."""
    return [
        encode_row(tokenizer, row, max_seq_len=max_seq_len, all_turns=all_turns) for row in rows
    ]
