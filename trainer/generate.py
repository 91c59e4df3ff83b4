"""Batched replies of a registered version: the base model with the version's LoRA adapter.

The demo's serving layer. One base model is loaded once; each version's adapter
(``registry/model_vN``, standard PEFT format) is loaded next to the others under its
version name and switched per batch; the version ``base`` disables adapters.
Prompts are left-padded and decoded greedily, so the same (version, conversation)
always gives the same reply: replies are cached, and a finite prompt set costs one
generation per unique conversation and version.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.exceptions import TrainerError

logger = logging.getLogger(__name__)

BASE_VERSION = "base"
"""The name served before any adapter is active (as in :mod:`trainer.serving`)."""

Messages = tuple[tuple[str, str], ...]
"""A conversation as hashable (role, content) pairs."""

GenerationProgress = Callable[[str, int, int], None]
"""Called after each generated chunk with (version, replies done, replies to generate)."""


class GenerationError(TrainerError):
    """A version could not be served: its adapter is missing or does not fit the base."""


def as_messages(conversation: Sequence[Mapping[str, str]]) -> Messages:
    """The hashable form of a chat-format conversation."""
    return tuple((m["role"], m["content"]) for m in conversation)


class ReplyGenerator:
    """Greedy, batched, cached replies of any registered version (thread-safe)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        registry_root: Path,
        max_new_tokens: int,
        batch_size: int,
    ) -> None:
        self._base = model
        self._model: Any = None
        self._tokenizer = tokenizer
        self._tokenizer.padding_side = "left"
        self._registry_root = registry_root
        self._max_new_tokens = max_new_tokens
        self._batch_size = batch_size
        self._cache: dict[tuple[str, Messages], str] = {}
        self._lock = threading.Lock()
        self.generated = 0
        self.on_progress: GenerationProgress | None = None

    def replies(self, version: str, conversations: Sequence[Messages]) -> list[str]:
        """One reply per conversation; only conversations not cached are generated."""
        with self._lock:
            missing = sorted({c for c in conversations if (version, c) not in self._cache})
            for start in range(0, len(missing), self._batch_size):
                chunk = missing[start : start + self._batch_size]
                for conversation, text in zip(chunk, self._generate(version, chunk), strict=True):
                    self._cache[version, conversation] = text
                if self.on_progress is not None:
                    self.on_progress(version, start + len(chunk), len(missing))
            return [self._cache[version, c] for c in conversations]

    def distinct(self, version: str) -> int:
        """Distinct conversations generated for ``version``: its independent observations."""
        with self._lock:
            return sum(1 for v, _ in self._cache if v == version)

    def _generate(self, version: str, chunk: Sequence[Messages]) -> list[str]:
        import torch

        texts = [
            self._tokenizer.apply_chat_template(
                [{"role": r, "content": c} for r, c in conversation],
                tokenize=False,
                add_generation_prompt=True,
            )
            for conversation in chunk
        ]
        batch = self._tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        with self._serving(version) as model, torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=self._max_new_tokens,
                do_sample=False,
                pad_token_id=self._tokenizer.pad_token_id,
            )
        self.generated += len(chunk)
        width = batch["input_ids"].shape[1]
        return [
            self._tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out
        ]

    @contextlib.contextmanager
    def _serving(self, version: str) -> Iterator[Any]:
        if version == BASE_VERSION:
            if self._model is None:
                yield self._base
                return
            with self._model.disable_adapter():
                yield self._model
            return
        from trainer.evaluation import merged_adapter  # torch: loaded with the model

        self._load(version)
        self._model.set_adapter(version)
        with merged_adapter(self._model):
            yield self._model

    def _load(self, version: str) -> None:
        from peft import PeftModel

        if self._model is not None and version in self._model.peft_config:
            return
        path = self._registry_root / version
        if not (path / "adapter_config.json").is_file():
            msg = f"{version} has no adapter at {path}: train it first (`loraloop train`)"
            raise GenerationError(msg)
        if self._model is None:
            self._model = PeftModel.from_pretrained(self._base, str(path), adapter_name=version)
        else:
            self._model.load_adapter(str(path), adapter_name=version)
        self._model.eval()
        logger.info("loaded adapter %s from %s", version, path)
