"""A tiny random causal LM with a byte-level BPE tokenizer, built offline.

For smoke runs (``loraloop demo --fast``) and tests: a 2-layer model saved with
``save_pretrained``, so everything downstream uses the real ``from_pretrained``
path. Nothing is downloaded. The default is a Llama with a ChatML template; the
``architecture`` and ``chat_format`` options build the other families the trainer
must handle (a Qwen2 with tied embeddings, grouped-query attention and Qwen2's
template with its default system prompt; a Llama with the Llama 3 header
template), and ``chat_template`` replaces the template outright (to test how a
broken one is refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

Architecture = Literal["llama", "qwen2"]
ChatFormatName = Literal["chatml", "qwen2", "llama3"]

#: The architectures :func:`build_tiny_checkpoint` can build.
ARCHITECTURES: Final[tuple[Architecture, ...]] = ("llama", "qwen2")

CHAT_TEMPLATE: Final = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL: Final = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: Qwen2-Instruct's template: ChatML with a default system turn when there is none.
QWEN2_TEMPLATE: Final = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: Llama 3 Instruct's template: a bos once, then header-delimited turns ending in eot.
LLAMA3_TEMPLATE: Final = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
LLAMA3_SPECIAL: Final = (
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
)


@dataclass(frozen=True)
class ChatFormat:
    """A chat template and the special tokens it is written in."""

    template: str
    special: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str


#: Chat formats by name: the tokens each real family uses for bos, end of turn and padding.
CHAT_FORMATS: Final[dict[ChatFormatName, ChatFormat]] = {
    "chatml": ChatFormat(CHAT_TEMPLATE, SPECIAL, bos=SPECIAL[1], eos=SPECIAL[2], pad=SPECIAL[0]),
    "qwen2": ChatFormat(QWEN2_TEMPLATE, SPECIAL, bos=None, eos=SPECIAL[2], pad=SPECIAL[0]),
    "llama3": ChatFormat(
        LLAMA3_TEMPLATE,
        LLAMA3_SPECIAL,
        bos=LLAMA3_SPECIAL[0],
        eos=LLAMA3_SPECIAL[3],
        pad=LLAMA3_SPECIAL[4],
    ),
}


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes and family of the tiny model (defaults as in the trainer tests).

    ``kv_heads`` (grouped-query attention) defaults to ``heads``; ``chat_template``,
    when set, replaces the chat format's template.
    """

    vocab_size: int = 400
    hidden_size: int = 32
    intermediate_size: int = 64
    layers: int = 2
    heads: int = 2
    kv_heads: int | None = None
    max_positions: int = 512
    initializer_range: float = 0.2
    seed: int = 0
    architecture: Architecture = "llama"
    chat_format: ChatFormatName = "chatml"
    chat_template: str | None = None
    tie_embeddings: bool = False


def _tokenizer(corpus: Iterable[str], cfg: TinyModelConfig, chat: ChatFormat) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.train_from_iterator(
        list(corpus),
        trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            special_tokens=list(chat.special),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, bos_token=chat.bos, eos_token=chat.eos, pad_token=chat.pad
    )
    tokenizer.chat_template = cfg.chat_template or chat.template
    return tokenizer


def _model(cfg: TinyModelConfig, tokenizer: Any) -> Any:
    """A randomly initialised causal LM of ``cfg.architecture`` sized for ``tokenizer``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    shape: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.kv_heads or cfg.heads,
        "max_position_embeddings": cfg.max_positions,
        "initializer_range": cfg.initializer_range,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if cfg.architecture == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**shape))  # type: ignore[no-untyped-call]
    return LlamaForCausalLM(LlamaConfig(**shape))  # type: ignore[no-untyped-call]


def build_tiny_checkpoint(
    path: Path, corpus: Iterable[str], config: TinyModelConfig | None = None
) -> Path:
    """Train a BPE tokenizer on ``corpus``, save it with a random model under ``path``."""
    import torch

    cfg = config or TinyModelConfig()
    tokenizer = _tokenizer(corpus, cfg, CHAT_FORMATS[cfg.chat_format])
    tokenizer.save_pretrained(path)
    torch.manual_seed(cfg.seed)
    _model(cfg, tokenizer).save_pretrained(path)
    return path
