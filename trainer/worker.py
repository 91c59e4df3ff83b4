"""``python -m trainer.worker``: one training cycle in its own process.

Configs arrive as JSON (``--train-json``/``--gate-json``; the environment fills
what they leave out). On success the registered ``version.json`` is the last
line of stdout and the exit status is 0; on failure the error goes to stderr,
the exit status is 1 (130 when interrupted) and nothing is registered.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from trainer.config import GateConfig, TrainConfig
from trainer.cycle import run_cycle
from trainer.exceptions import TrainerError

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
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Run one cycle; the exit status says whether a version was registered."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        info = run_cycle(
            args.dataset_dir,
            registry_root=args.registry_root,
            data_dir=args.data_dir,
            train_config=TrainConfig.model_validate_json(args.train_json),
            gate_config=GateConfig.model_validate_json(args.gate_json),
            parent=args.parent,
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
