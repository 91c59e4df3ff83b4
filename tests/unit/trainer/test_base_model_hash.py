"""Weight shards are hashed once: unchanged files' sha256 come from the per-file cache."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import trainer.base_model as base_model
from trainer.base_model import (
    HASH_CACHE_FILE,
    HASH_CACHE_SUFFIX,
    resolve_base_model,
    weights_sha256,
)

SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
SHARD_BYTES = 4096


def uncached(checkpoint: Path) -> str:
    """The sharded identity computed from scratch: sha256 over ``name:sha256`` lines."""
    lines = "".join(
        f"{name}:{hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()}\n"
        for name in SHARDS
    )
    return hashlib.sha256(lines.encode()).hexdigest()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A sharded checkpoint directory (the hash never parses the shards)."""
    path = tmp_path / "ckpt"
    path.mkdir()
    (path / "config.json").write_text("{}")
    for index, name in enumerate(SHARDS):
        (path / name).write_bytes(bytes([index]) * SHARD_BYTES)
    return path


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file ``sha256_file`` reads, in order."""
    seen: list[Path] = []
    real: Callable[[Path], str] = base_model.sha256_file

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(base_model, "sha256_file", counting)
    return seen


def test_a_second_call_reads_no_shard(checkpoint: Path, hashed: list[Path]) -> None:
    first = weights_sha256(checkpoint)
    assert [p.name for p in hashed] == list(SHARDS)
    assert (checkpoint / HASH_CACHE_FILE).is_file()
    hashed.clear()
    assert weights_sha256(checkpoint) == first == uncached(checkpoint)
    assert hashed == []


def test_only_a_changed_shard_is_hashed_again(checkpoint: Path, hashed: list[Path]) -> None:
    first = weights_sha256(checkpoint)
    hashed.clear()
    changed = checkpoint / SHARDS[1]
    changed.write_bytes(b"\xff" * SHARD_BYTES)  # same size: only the mtime tells
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = weights_sha256(checkpoint)
    assert [p.name for p in hashed] == [SHARDS[1]]
    assert second != first
    assert second == uncached(checkpoint)


def test_a_corrupt_cache_is_ignored_and_rewritten(checkpoint: Path, hashed: list[Path]) -> None:
    (checkpoint / HASH_CACHE_FILE).write_text("{not json")
    assert weights_sha256(checkpoint) == uncached(checkpoint)
    assert len(hashed) == len(SHARDS)
    hashed.clear()
    weights_sha256(checkpoint)
    assert hashed == []


def test_a_read_only_checkpoint_keeps_its_cache_next_to_the_cache_dir(
    checkpoint: Path, tmp_path: Path, hashed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_access = os.access

    def access(path: os.PathLike[str] | str, mode: int) -> bool:
        return Path(path) != checkpoint and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    cache_dir = tmp_path / "data" / "cache" / "base-model"
    first = resolve_base_model(base_model=str(checkpoint), cache_dir=cache_dir)
    assert not (checkpoint / HASH_CACHE_FILE).exists()
    assert (cache_dir.parent / f"base-model{HASH_CACHE_SUFFIX}").is_file()
    assert not cache_dir.exists()  # left for a GGUF conversion to rename into place
    hashed.clear()
    assert resolve_base_model(base_model=str(checkpoint), cache_dir=cache_dir) == first
    assert hashed == []


def test_without_any_writable_place_every_call_hashes(
    checkpoint: Path, hashed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(path: os.PathLike[str] | str, mode: int) -> bool:
        del path, mode
        return False

    monkeypatch.setattr(os, "access", never)
    assert weights_sha256(checkpoint) == weights_sha256(checkpoint) == uncached(checkpoint)
    assert len(hashed) == 2 * len(SHARDS)
    assert not (checkpoint / HASH_CACHE_FILE).exists()
