"""Fixtures: the tiny random causal LM of :mod:`tests.trainer_fixtures`."""

from __future__ import annotations

from tests.trainer_fixtures import tiny_checkpoint

__all__ = ["tiny_checkpoint"]
