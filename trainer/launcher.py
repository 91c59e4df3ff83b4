"""Start a training cycle in a child process so the caller (and its event loop) never blocks.

:func:`train_in_subprocess` waits synchronously; :func:`train_in_subprocess_async`
awaits the child with asyncio and terminates it if the awaiting task is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from trainer.config import GateConfig, TrainConfig
from trainer.exceptions import TrainingFailedError
from trainer.versions import VersionInfo

_STDERR_TAIL = 4000


def worker_command(
    dataset_dir: Path,
    *,
    registry_root: Path,
    data_dir: Path,
    train_config: TrainConfig,
    gate_config: GateConfig,
    parent: str | None = None,
) -> list[str]:
    """The argv of ``python -m trainer.worker`` for these inputs."""
    command = [
        sys.executable,
        "-m",
        "trainer.worker",
        f"--dataset-dir={dataset_dir}",
        f"--registry-root={registry_root}",
        f"--data-dir={data_dir}",
        f"--train-json={train_config.model_dump_json()}",
        f"--gate-json={gate_config.model_dump_json()}",
    ]
    return command + ([f"--parent={parent}"] if parent else [])


def _result(returncode: int, stdout: bytes, stderr: bytes) -> VersionInfo:
    if returncode != 0:
        tail = stderr.decode(errors="replace")[-_STDERR_TAIL:]
        msg = f"training worker exited with {returncode}; nothing registered:\n{tail}"
        raise TrainingFailedError(msg, returncode=returncode)
    last = stdout.decode().strip().splitlines()[-1]
    return VersionInfo.model_validate_json(last)


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def train_in_subprocess(
    dataset_dir: Path,
    *,
    registry_root: Path,
    data_dir: Path,
    train_config: TrainConfig | None = None,
    gate_config: GateConfig | None = None,
    parent: str | None = None,
    timeout_s: float | None = None,
) -> VersionInfo:
    """Run one cycle in a child process and return the registered version."""
    command = worker_command(
        dataset_dir,
        registry_root=registry_root,
        data_dir=data_dir,
        train_config=train_config or TrainConfig(),
        gate_config=gate_config or GateConfig(),
        parent=parent,
    )
    done = subprocess.run(command, capture_output=True, timeout=timeout_s, env=_env(), check=False)  # noqa: S603
    return _result(done.returncode, done.stdout, done.stderr)


async def train_in_subprocess_async(
    dataset_dir: Path,
    *,
    registry_root: Path,
    data_dir: Path,
    train_config: TrainConfig | None = None,
    gate_config: GateConfig | None = None,
    parent: str | None = None,
) -> VersionInfo:
    """Like :func:`train_in_subprocess`, awaited; cancelling terminates the child."""
    command = worker_command(
        dataset_dir,
        registry_root=registry_root,
        data_dir=data_dir,
        train_config=train_config or TrainConfig(),
        gate_config=gate_config or GateConfig(),
        parent=parent,
    )
    child = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    try:
        stdout, stderr = await child.communicate()
    except asyncio.CancelledError:
        child.terminate()
        await child.wait()
        raise
    return _result(child.returncode or 0, stdout, stderr)
