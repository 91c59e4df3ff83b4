"""The demo's words: every progress and closing line it prints, as plain functions.

Kept apart from the coroutines that print them so each line can be tested on its own:
a reader sees counts as ``base 30, model_v1 10``, never a Python dict, a failed gate
always with its reason, and a cycle that did not ship as one line that says why.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from itertools import takewhile
from pathlib import Path
from typing import Any, Final

NONE_TEXT: Final = "none"
"""What an empty tally reads as."""

P_DIGITS: Final = 2
"""Significant digits of a p-value in a progress line (0.011, 0.00049)."""

ROLLED_BACK: Final = "rolled_back"
"""The rollout status (trainer/rollout.py ``RolloutStatus``) of a canary that was undone."""

UNFINISHED: Final = {"running": "stayed", "held": "was held"}
"""Unfinished rollout statuses, and how the canary's stop reads for each."""

NO_GATE_REASON: Final = "the gate recorded no reason (its gate.json is missing or empty)"

_NOTE_ENDINGS: Final = (
    ": reported, not decisive",
    ": improved",
    "; not claimed",
    ": non-inferior",
    ": baseline check skipped",
    " were skipped",
)
"""Endings of the gate's reason lines that are notes, not failures (trainer/behaviour.py)."""

_NOTE_PREFIX: Final = "diagnostic, not decisive:"
"""The gate's loss diagnostics (trainer/gate.py ``loss_notes``): never a failure."""

_NOT_CLAIMED: Final = re.compile(
    r"^(?P<name>[^:]+): .*?gain (?P<gain>[+-]?\d+%).*: not improved \((?P<why>[^)]*)\)"
)
"""A per-type line of a type the gate did not claim, and why not."""


def counts_text(counts: Mapping[str, Any]) -> str:
    """``base 30, model_v1 10``: a tally by name, in name order; ``none`` when empty."""
    parts = [f"{name} {n}" for name, n in sorted(counts.items()) if n]
    return ", ".join(parts) or NONE_TEXT


def traffic_line(
    conversations: int,
    per_version: Mapping[str, int],
    captured: int,
    labelled: int,
    problems: Mapping[str, int],
) -> str:
    """One traffic batch: conversations per version, what was captured and labelled as what."""
    kinds = f" ({counts_text(problems)})" if any(problems.values()) else ""
    return (
        f"  {conversations} conversations ({counts_text(per_version)}), "
        f"{captured} captured, {labelled} labelled{kinds}"
    )


def pool_line(cycle: int, tiers: Mapping[str, int]) -> str:
    """What a cycle trains from: samples per status in the pool."""
    return f"cycle {cycle}: training on the pool ({counts_text(tiers)})"


def seed_line(seed: Mapping[str, Any]) -> str:
    """What seeding the baseline did, and who approved it (or that nobody did)."""
    moved = int(seed.get("moved_to_core") or 0)
    approver = seed.get("approver")
    if approver:
        moved_text = f"{moved} moved to core by {approver}"
    else:
        moved_text = "none moved to core (no --approve-as)"
    return (
        f"  seed baseline: {seed.get('conversations', 0)} conversations, "
        f"{seed.get('labelled_problems', 0)} labelled as problems, {moved_text}"
    )


def paired_text(gate: Mapping[str, Any]) -> str:
    """``missing_knowledge fixed 9 / broken 1 of 32 (p 0.011)`` per problem type, ``; ``-joined."""
    parts = [
        f"{name} fixed {v.get('fixed')} / broken {v.get('broken')} of {v.get('prompts')} "
        f"(p {v.get('p_value', 1.0):.{P_DIGITS}g})"
        for name, v in sorted((gate.get("paired") or {}).items())
    ]
    return "; ".join(parts)


def _is_note(reason: str) -> bool:
    return reason.endswith(_NOTE_ENDINGS) or reason.startswith(_NOTE_PREFIX)


def gate_failure_reason(gate: Mapping[str, Any]) -> str:
    """Why the gate failed: its failure lines, then why each unclaimed type fell short.

    The verdict lists failures first, then notes (trainer/behaviour.py ``decide``);
    the failures are the lines before the first note. A type that was not claimed
    adds its shortfall (``missing_knowledge not improved (gain +19%; gain below 20%)``).
    Never empty: a gate with no reason lines says so.
    """
    reasons = [str(r) for r in gate.get("reasons") or []]
    if not reasons:
        return NO_GATE_REASON
    failures = list(takewhile(lambda r: not _is_note(r), reasons)) or reasons[:1]
    shortfalls = [
        f"{m['name']} not improved (gain {m['gain']}; {m['why']})"
        for m in map(_NOT_CLAIMED.match, reasons)
        if m is not None and m["name"] != "pooled"
    ]
    return "; ".join(failures + shortfalls)


def gate_line(cycle: int, version: str, gate: Mapping[str, Any]) -> str:
    """The gate's verdict on ``version``: passed or failed (with the reason), the paired numbers."""
    paired = paired_text(gate)
    numbers = f"; {paired}" if paired else ""
    if gate.get("passed"):
        claimed = ", ".join(gate.get("claimed") or []) or NONE_TEXT
        return f"cycle {cycle}: {version} passed the gate{numbers}; claimed: {claimed}"
    return f"cycle {cycle}: {version} failed the gate: {gate_failure_reason(gate)}{numbers}"


def no_version_reason(status: str, error: str | None) -> str:
    """Why training registered no version: its status, and its error when it has one."""
    return f"no version trained ({status}: {error})" if error else f"no version trained ({status})"


def rollout_reason(status: str, looks: Sequence[Mapping[str, Any]]) -> str:
    """Why a canary did not complete: where it stopped, after how many looks, and the last word.

    ``rolled back at 50 % (look 2): over_promise regressed``, or ``the canary stayed at
    75 % after 4 looks: no target problem type is solved yet``.
    """
    if not looks:
        return f"the rollout ended {status} before its first look"
    last = looks[-1]
    where = f"{last.get('step_percent', 0):g} %"
    if status == ROLLED_BACK:
        return f"rolled back at {where} (look {last.get('look')}): {last.get('reason')}"
    if status in UNFINISHED:
        return (
            f"the canary {UNFINISHED[status]} at {where} after {len(looks)} "
            f"look{'' if len(looks) == 1 else 's'}: "
            f"{last.get('reason')}"
        )
    return f"rollout {status} at {where} (look {last.get('look')}): {last.get('reason')}"


def not_shipped_line(cycle: Mapping[str, Any], *, last: bool) -> str:
    """``cycle N did not ship: <reason>; the next cycle goes on from <parent>``."""
    reason = cycle.get("reason") or "no reason recorded"
    then = "it was the last cycle" if last else f"the next cycle goes on from {cycle['parent']}"
    return f"cycle {cycle['cycle']} did not ship: {reason}; {then}"


def console_line(url: str) -> str:
    """Where the review console is, and that it lives only as long as the demo."""
    return f"[bold]review console (while the demo runs):[/] {url}"


def closing_hint(data_dir: Path) -> str:
    """How to browse the demo's result once it has exited (its console stopped with it)."""
    return (
        "the review console stopped with the demo; to browse the result, run "
        f"`loraloop up --data-dir {shlex.quote(str(data_dir))}`"
    )
