"""Fixtures: the tiny random causal LM and tokenizer of :mod:`tests.trainer_fixtures`."""

from __future__ import annotations

from tests.trainer_fixtures import tiny_checkpoint, tiny_tokenizer

__all__ = ["tiny_checkpoint", "tiny_tokenizer"]
