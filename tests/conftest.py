"""Shared fixtures: every test gets its own data directory, topics and consumer group."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "events.jsonl"


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def isolated_env(tmp_path: Path, unique_id: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LORALOOP_* pointing at a fresh data dir, topic prefix and app id; yields the data dir."""
    for key in list(os.environ):
        if key.startswith("LORALOOP_"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LORALOOP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LORALOOP_STREAM__TOPIC_PREFIX", f"t{unique_id}.")
    monkeypatch.setenv("LORALOOP_STREAM__APP_ID", f"loraloop-test-{unique_id}")
    monkeypatch.setenv("LORALOOP_CONSOLE__PORT", "0")  # tests run stacks side by side
    monkeypatch.setenv("LORALOOP_GATEWAY__IN_STACK", "false")  # its own tests turn it on
    # `loraloop up` also runs the trainer and rollout services; stream tests leave them off
    # (their own tests start them explicitly).
    monkeypatch.setenv("LORALOOP_TRAINER__ENABLED", "false")
    monkeypatch.setenv("LORALOOP_ROLLOUT_SERVICE__ENABLED", "false")
    return data_dir
