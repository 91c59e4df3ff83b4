"""The embedded engine's jemalloc options are set before chdb loads, never over the user's."""

from __future__ import annotations

import os
import sys

import pytest

from analytics.warehouse import ENGINE_MALLOC_ENV, configure_engine_allocator
from loraloop.settings import WarehouseSettings


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(ENGINE_MALLOC_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "chdb", raising=False)  # as if not loaded yet
    return monkeypatch


def test_the_default_returns_freed_pages_at_once(fresh: pytest.MonkeyPatch) -> None:
    configure_engine_allocator(WarehouseSettings().embedded_malloc_conf)
    assert "dirty_decay_ms:0" in os.environ[ENGINE_MALLOC_ENV]


def test_an_existing_setting_wins(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv(ENGINE_MALLOC_ENV, "narenas:2")
    configure_engine_allocator("dirty_decay_ms:0")
    assert os.environ[ENGINE_MALLOC_ENV] == "narenas:2"


def test_empty_keeps_jemalloc_defaults(fresh: pytest.MonkeyPatch) -> None:
    configure_engine_allocator("")
    assert ENGINE_MALLOC_ENV not in os.environ


def test_nothing_changes_once_chdb_is_loaded(fresh: pytest.MonkeyPatch) -> None:
    fresh.setitem(sys.modules, "chdb", sys)  # any module: chdb counts as loaded
    configure_engine_allocator("dirty_decay_ms:0")
    assert ENGINE_MALLOC_ENV not in os.environ
