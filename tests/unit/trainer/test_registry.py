"""The registry: fresh names, atomic commit, lifecycle of a version's status."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from trainer.exceptions import RegistryError, StatusTransitionError
from trainer.registry import Registry, write_version
from trainer.versions import VersionInfo, VersionStatus

BASE = {"name": "tiny", "source": "/models/tiny", "sha256": "ab" * 32}


def _register(registry: Registry, parent: str | None = None) -> str:
    name = registry.reserve()
    with registry.staged(name) as staging:
        (staging / "adapter_model.safetensors").write_bytes(b"x")
        info = VersionInfo(
            name=name,
            parent=parent,
            base_model=BASE,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            status=VersionStatus.TRAINED,
            gate_passed=True,
        )
        write_version(staging, info)
    return name


def _crash_while_staged(registry: Registry, name: str) -> None:
    with registry.staged(name) as staging:
        (staging / "adapter_model.safetensors").write_bytes(b"partial")
        msg = "boom"
        raise ValueError(msg)


def test_names_increase_and_are_never_reused(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert _register(registry) == "model_v1"
    failed = registry.reserve()
    with pytest.raises(ValueError, match="boom"):
        _crash_while_staged(registry, failed)
    assert failed == "model_v2"
    assert not (tmp_path / failed).exists()
    assert _register(registry, parent="model_v1") == "model_v3"
    assert [v.name for v in registry.versions()] == ["model_v1", "model_v3"]
    assert Registry(tmp_path).reserve() == "model_v4"


def test_a_stage_without_version_json_is_not_registered(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    name = registry.reserve()
    with pytest.raises(RegistryError, match="version.json"), registry.staged(name):
        pass
    assert registry.versions() == []


def test_unreserved_names_cannot_be_staged(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="reserve"), Registry(tmp_path).staged("model_v9"):
        pass


def test_status_follows_the_lifecycle(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    name = _register(registry)
    assert registry.set_status(name, VersionStatus.CANARY).status is VersionStatus.CANARY
    registry.set_status(name, VersionStatus.ACTIVE)
    assert registry.latest(VersionStatus.ACTIVE) is not None
    registry.set_status(name, VersionStatus.ROLLED_BACK)
    with pytest.raises(StatusTransitionError, match="rolled_back -> active"):
        registry.set_status(name, VersionStatus.ACTIVE)
    assert registry.get(name).status_changed_at is not None


def test_row_mirrors_version_json(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    name = _register(registry)
    row = registry.row(name)
    assert row["version"] == name
    assert row["version_number"] == 1
    assert row["base_model_sha256"] == BASE["sha256"]
    assert row["status"] == "trained"
    assert row["parent"] == ""
    assert row["path"] == str((tmp_path / name).resolve())


def test_unknown_version_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no registered version"):
        Registry(tmp_path).get("model_v1")
