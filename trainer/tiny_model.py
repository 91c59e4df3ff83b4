"""A tiny random causal LM with a byte-level BPE tokenizer, built offline.

For smoke runs (``loraloop demo --fast``) and tests: a 2-layer Llama and a
ChatML template, saved with ``save_pretrained`` so everything downstream uses
the real ``from_pretrained`` path. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CHAT_TEMPLATE: Final = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL: Final = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny model (defaults as in the trainer tests)."""

    vocab_size: int = 400
    hidden_size: int = 32
    intermediate_size: int = 64
    layers: int = 2
    heads: int = 2
    max_positions: int = 512
    initializer_range: float = 0.2
    seed: int = 0


def build_tiny_checkpoint(
    path: Path, corpus: Iterable[str], config: TinyModelConfig | None = None
) -> Path:
    """Train a BPE tokenizer on ``corpus``, save it with a random Llama under ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = config or TinyModelConfig()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.train_from_iterator(
        list(corpus),
        trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            special_tokens=list(SPECIAL),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, bos_token=SPECIAL[1], eos_token=SPECIAL[2], pad_token=SPECIAL[0]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_positions,
        initializer_range=cfg.initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    LlamaForCausalLM(model_config).save_pretrained(path)  # type: ignore[no-untyped-call]
    return path
