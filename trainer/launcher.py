"""Start a training cycle in a child process so the caller (and its event loop) never blocks.

:func:`train_in_subprocess` waits synchronously; :func:`train_in_subprocess_async`
awaits the child with asyncio and terminates it if the awaiting task is cancelled;
given ``on_progress``, it asks the worker for progress lines (``--progress-events``)
and hands each one over as a :class:`TrainProgress` while the child runs: the
training steps, then the gate's generation progress (``stage == "gate"``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from trainer.config import GateConfig, TrainConfig
from trainer.exceptions import TrainingFailedError
from trainer.versions import VersionInfo

_STDERR_TAIL = 4000
PROGRESS_PREFIX = "@progress "


STAGE_TRAIN = "train"
STAGE_GATE = "gate"


@dataclass(frozen=True)
class TrainProgress:
    """How far the worker is: in ``stage`` "train", step 0 (with the total) first, then each
    optimizer step; then in ``stage`` "gate", replies generated (``step``) of all the gate
    generates (``total_steps``), from 0, after each generation batch.

    A line without ``stage`` (an older worker) is a training step.
    """

    step: int
    total_steps: int
    loss: float | None = None
    stage: str = STAGE_TRAIN

    def line(self) -> str:
        """The worker's stdout line for this event."""
        return PROGRESS_PREFIX + orjson.dumps(self.__dict__).decode() + "\n"

    @classmethod
    def parse(cls, line: bytes) -> TrainProgress | None:
        """The event of a progress line, None for any other line."""
        prefix = PROGRESS_PREFIX.encode()
        if not line.startswith(prefix):
            return None
        return cls(**orjson.loads(line[len(prefix) :]))


def worker_command(
    dataset_dir: Path,
    *,
    registry_root: Path,
    data_dir: Path,
    train_config: TrainConfig,
    gate_config: GateConfig,
    parent: str | None = None,
    progress_events: bool = False,
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
    command += [f"--parent={parent}"] if parent else []
    return command + (["--progress-events"] if progress_events else [])


def _result(returncode: int, stdout: bytes, stderr: bytes) -> VersionInfo:
    if returncode != 0:
        tail = stderr.decode(errors="replace")[-_STDERR_TAIL:]
        msg = f"training worker exited with {returncode}; nothing registered:\n{tail}"
        raise TrainingFailedError(msg, returncode=returncode)
    lines = stdout.decode().strip().splitlines()
    last = [line for line in lines if not line.startswith(PROGRESS_PREFIX)][-1]
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
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> VersionInfo:
    """Like :func:`train_in_subprocess`, awaited; cancelling terminates the child."""
    command = worker_command(
        dataset_dir,
        registry_root=registry_root,
        data_dir=data_dir,
        train_config=train_config or TrainConfig(),
        gate_config=gate_config or GateConfig(),
        parent=parent,
        progress_events=on_progress is not None,
    )
    child = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    try:
        stdout, stderr = await asyncio.gather(
            _read_stdout(child.stdout, on_progress), _read_all(child.stderr)
        )
        await child.wait()
    except asyncio.CancelledError:
        child.terminate()
        await child.wait()
        raise
    return _result(child.returncode or 0, stdout, stderr)


async def _read_all(stream: asyncio.StreamReader | None) -> bytes:
    return await stream.read() if stream is not None else b""


async def _read_stdout(
    stream: asyncio.StreamReader | None, on_progress: Callable[[TrainProgress], None] | None
) -> bytes:
    """The child's stdout as it comes, progress lines handed to ``on_progress``."""
    kept: list[bytes] = []
    if stream is None:
        return b""
    async for line in stream:
        event = TrainProgress.parse(line)
        if event is None:
            kept.append(line)
        elif on_progress is not None:
            on_progress(event)
    return b"".join(kept)
