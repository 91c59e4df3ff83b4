"""Figures the reliability tests record for ``benchmarks/reliability_report.py``.

A test calls :func:`record` with its scenario name and numbers (events, faults
injected, rows lost, rows duplicated, time to recover...). When the environment
variable ``RELIABILITY_FIGURES_FILE`` (not ``LORALOOP_*``:
the isolated_env fixture clears those) names a file, the figures are merged
into it as JSON (one object per scenario); otherwise they are only kept in memory.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Final

ENV: Final = "RELIABILITY_FIGURES_FILE"
_LOCK = threading.Lock()


def record(scenario: str, **figures: Any) -> None:
    """Merge ``figures`` under ``scenario`` into the figures file (if one is configured)."""
    target = os.environ.get(ENV)
    if not target:
        return
    path = Path(target)
    with _LOCK:
        data: dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except ValueError:
                data = {}
        data.setdefault(scenario, {}).update(figures)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        tmp.replace(path)
