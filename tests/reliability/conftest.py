"""Reliability fixtures: the shared session broker and console come from the other suites."""

from __future__ import annotations

from tests.integration.conftest import broker
from tests.unit.console.conftest import console

__all__ = ["broker", "console"]
