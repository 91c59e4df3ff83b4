"""``python -m trainer.worker``: one training cycle in its own process.

Configs arrive as JSON (``--train-json``/``--gate-json``; the environment fills
what they leave out). On success the registered ``version.json`` is the last
line of stdout and the exit status is 0 (with ``--progress-events``, progress lines
:class:`~trainer.launcher.TrainProgress`, training steps then gate generation, come
before it); on failure the error goes to stderr, the exit status is 1 (130 when
interrupted) and nothing is registered.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from trainer.config import GateConfig, TrainConfig
from trainer.cycle import run_cycle
from trainer.dataset import SPLIT_TRAIN
from trainer.exceptions import TrainerError
from trainer.launcher import STAGE_GATE, TrainProgress
from trainer.lora import StepInfo
from trainer.manifest import read_rows
from trainer.schedule import total_steps

logger = logging.getLogger("trainer.worker")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.worker", description=__doc__)
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--registry-root", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--parent", default=None)
    parser.add_argument("--train-json", default="{}")
    parser.add_argument("--gate-json", default="{}")
    parser.add_argument("--progress-events", action="store_true")
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _progress_hook(dataset_dir: Path, config: TrainConfig) -> Callable[[StepInfo], None]:
    """Announce the total steps now, then write one progress line per optimizer step."""
    train = sum(1 for row in read_rows(dataset_dir) if row["split"] == SPLIT_TRAIN)
    total = total_steps(train, config)
    _emit(TrainProgress(step=0, total_steps=total))

    def on_step(info: StepInfo) -> None:
        _emit(TrainProgress(step=info.step, total_steps=total, loss=info.loss))

    return on_step


def _gate_hook(done: int, total: int) -> None:
    """One progress line per generation batch of the gate."""
    _emit(TrainProgress(step=done, total_steps=total, stage=STAGE_GATE))


def _emit(event: TrainProgress) -> None:
    sys.stdout.write(event.line())
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run one cycle; the exit status says whether a version was registered."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        train_config = TrainConfig.model_validate_json(args.train_json)
        hook = _progress_hook(args.dataset_dir, train_config) if args.progress_events else None
        info = run_cycle(
            args.dataset_dir,
            registry_root=args.registry_root,
            data_dir=args.data_dir,
            train_config=train_config,
            gate_config=GateConfig.model_validate_json(args.gate_json),
            parent=args.parent,
            on_step=hook,
            on_gate=_gate_hook if args.progress_events else None,
        )
    except KeyboardInterrupt:
        logger.error("training interrupted; nothing registered")
        return EXIT_INTERRUPTED
    except (TrainerError, ValueError, RuntimeError, OSError) as error:
        logger.error("training failed; nothing registered: %s", error)
        return EXIT_FAILED
    sys.stdout.write(info.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
