"""The service key: generated private and reused, compared safely; stack files kept private."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from loraloop.exceptions import ConfigError
from loraloop.service_key import key_matches, service_key, service_key_file
from loraloop.settings import Settings, StreamSettings
from streams.stack import (
    StackInfo,
    StackRunningError,
    _remove_own_stack_file,
    _write_stack_file,
    claim_data_dir,
    private_dir,
)


def test_a_generated_key_is_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="LORALOOP_STREAM__SERVICE_KEY"):
        service_key(settings, create=False)
    key = service_key(settings)
    assert stat.S_IMODE(service_key_file(settings).stat().st_mode) == 0o600
    assert service_key(settings) == service_key(settings, create=False) == key
    configured = Settings(data_dir=tmp_path, stream=StreamSettings(service_key=SecretStr("k1")))
    assert service_key(configured, create=False) == "k1"


@pytest.mark.parametrize(
    "header",
    [None, "", "k1", "Basic k1", "Bearer k2", "Bearer k1x", "Bearer \udce9", "Bearer é"],
)
def test_only_the_bearer_key_matches(header: str | None) -> None:
    assert not key_matches(header, "k1")


def test_the_bearer_key_matches() -> None:
    assert key_matches("Bearer k1", "k1")
    assert key_matches("bearer  k1 ", "k1")
    assert not key_matches("Bearer ", "")


def _info(settings: Settings, pid: int) -> StackInfo:
    return StackInfo("b:1", "http://w", pid, str(settings.data_dir), "now")


def test_stack_files_are_private_and_only_the_owner_removes_stack_json(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _write_stack_file(settings, _info(settings, os.getpid() + 1))
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.stack_file.stat().st_mode) == 0o600
    _remove_own_stack_file(settings, os.getpid())  # another stack's file: kept
    assert json.loads(settings.stack_file.read_text())["pid"] == os.getpid() + 1
    _remove_own_stack_file(settings, os.getpid() + 1)
    assert not settings.stack_file.exists()


def test_an_open_data_dir_we_own_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)  # noqa: S103 (the loose directory under test)
    private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_a_second_claim_on_an_embedded_store_names_the_holder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    private_dir(settings.data_dir)
    with claim_data_dir(settings):
        with pytest.raises(StackRunningError, match=rf"stop `loraloop up` \(pid {os.getpid()}\)"):
            with claim_data_dir(settings):
                pass
    with claim_data_dir(settings):  # released with the block
        pass
