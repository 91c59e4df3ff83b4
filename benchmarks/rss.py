"""Resident memory of a worker: its own and its capture process's (not the broker's)."""

from __future__ import annotations

from pathlib import Path

SPAWNED_CHILD = b"multiprocessing.spawn"
"""In the command line of a child the worker spawned (its capture process)."""


def _vmrss_mb(pid: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(ln.split()[1]) / 1024 for ln in fh if ln.startswith("VmRSS:")), 0.0)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def worker_rss_mb(pid: int | str = "self") -> float:
    """RSS of ``pid`` plus its spawned Python children, in MB (an embedded broker is not)."""
    total = _vmrss_mb(str(pid))
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in children:
            try:
                spawned = SPAWNED_CHILD in Path(f"/proc/{child}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if spawned:
                total += _vmrss_mb(child)
    return total
