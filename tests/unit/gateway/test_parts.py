"""The gateway's small parts: its key file, the per-user rate, turn indices."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.errors import RateLimitError
from gateway.keys import gateway_key, gateway_key_file
from gateway.limits import RateLimiter
from gateway.traffic import TurnIndex
from loraloop.exceptions import ConfigError


def test_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LORALOOP_GATEWAY__API_KEY"):
        gateway_key(tmp_path, None, create=False)
    key = gateway_key(tmp_path, None)
    assert stat.S_IMODE(gateway_key_file(tmp_path).stat().st_mode) == 0o600
    assert gateway_key(tmp_path, None) == key
    assert gateway_key(tmp_path, None, create=False) == key
    assert gateway_key(tmp_path, SecretStr("configured")) == "configured"


def test_rate_refills_per_user() -> None:
    now = [0.0]
    limiter = RateLimiter(per_s=2.0, burst=2, keys=10, clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimitError) as caught:
        limiter.take("a")
    assert caught.value.retry_after_s == pytest.approx(0.5)
    limiter.take("b")
    now[0] = 0.5
    limiter.take("a")


def test_rate_zero_is_off() -> None:
    limiter = RateLimiter(per_s=0, burst=1, keys=1)
    for _ in range(100):
        limiter.take("a")


def test_turn_indices_continue_from_history_or_memory() -> None:
    turns = TurnIndex(conversations=10)
    assert turns.claim("c", prior_turns=0) == 0
    assert turns.claim("c", prior_turns=0) == 2  # the client sent only its newest message
    assert turns.claim("c", prior_turns=4) == 4  # the full history
    assert turns.claim("d", prior_turns=6) == 6  # a history the gateway never saw
