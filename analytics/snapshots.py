"""What a label refers to, frozen: the transcript snapshot of its conversation.

A label row carries a fingerprint of every turn the conversation held when it was
written (``transcript_turns``: turn index, event id, role and the SHA-256 of the
text, never the text itself, so the raw-text TTL still bounds how long words are
kept), the first signalled turn (``signal_turn``, the anchor the trainer cuts the
context at; -1 for none) and the SHA-256 of both (``transcript_sha256``). An
approval names the label revision and that hash in its evidence.

Before a promotion and at every export the snapshot is compared with what
``turns`` holds now (:func:`compare`):

- nothing changed, or only texts that expired (empty now: the raw-text TTL) →
  the label stands;
- events were added (a new event at an existing ``turn_index``, a turn after the
  end) → the sample needs re-review; exports still hold only the snapshot's
  turns, whose texts match what was labelled;
- a snapshot turn's text, index or role changed, or its event is gone → the
  sample needs re-review and the approved text no longer exists: exports leave
  the sample out, with the reason.

A sample that needs re-review gets a ``rereview`` sample flag (:func:`flag`,
written at export and when a promotion is refused) and ``needs_review`` in the
review queue; relabelling it takes a new snapshot. Labels written before
snapshots existed (``transcript_sha256`` empty) are not checked.

Blocking; async callers go through ``Warehouse.run``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from analytics.flags import FlagKind, SampleFlag, write_flags

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

SNAPSHOT_COLUMNS: Final = ("transcript_sha256", "transcript_turns", "signal_turn")
"""The ``sample_labels`` columns of a label's snapshot (migration 0011), in row order."""

NO_SIGNAL: Final = -1
"""``signal_turn`` of a snapshot taken when no signal pointed at a turn."""

SEP: Final = "\t"
"""Field separator of one turn's fingerprint: ``index, event_id, role, text SHA-256``."""

REVIEW_CAUSE: Final = "transcript_changed"
"""``cause`` in the evidence of the re-review flag of a changed conversation."""

FLAG_ACTOR: Final = "snapshot-check"
"""The actor of the re-review flags written here."""

MAX_LISTED_CHANGES: Final = 5
"""Changes spelled out in a one-line reason; the rest are counted."""

_TURNS_SQL: Final = """
SELECT conversation_id, event_id, turn_index, role, text
FROM turns FINAL
WHERE has({ids:Array(String)}, conversation_id)
ORDER BY conversation_id, turn_index, event_id
"""

_SIGNALS_SQL: Final = """
SELECT conversation_id, min(assumeNotNull(turn_index))
FROM signals FINAL
WHERE has({ids:Array(String)}, conversation_id) AND turn_index IS NOT NULL
GROUP BY conversation_id
"""

_LABELS_SQL: Final = """
SELECT sample_id, revision, transcript_sha256, transcript_turns, signal_turn
FROM sample_labels FINAL
WHERE has({ids:Array(String)}, sample_id)
"""


def text_sha256(text: str) -> str:
    """The hex SHA-256 of a turn's text."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored turn of a conversation, as ``turns`` holds it now."""

    event_id: str
    turn_index: int
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class TurnPrint:
    """The fingerprint of one turn in a snapshot."""

    turn_index: int
    event_id: str
    role: str
    text_sha256: str

    @classmethod
    def of(cls, turn: Turn) -> TurnPrint:
        return cls(turn.turn_index, turn.event_id, turn.role, text_sha256(turn.text))

    @classmethod
    def parse(cls, stored: str) -> TurnPrint:
        index, rest = stored.split(SEP, 1)
        event_id, role, digest = rest.rsplit(SEP, 2)
        return cls(int(index), event_id, role, digest)

    def encoded(self) -> str:
        return SEP.join((str(self.turn_index), self.event_id, self.role, self.text_sha256))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The turns (fingerprints) and the anchor a label was written against."""

    turns: tuple[TurnPrint, ...]
    signal_turn: int | None

    @classmethod
    def of(cls, turns: Iterable[Turn], signal_turn: int | None) -> Snapshot:
        prints = sorted((TurnPrint.of(t) for t in turns), key=lambda p: (p.turn_index, p.event_id))
        return cls(tuple(prints), signal_turn)

    @classmethod
    def stored(cls, digest: str, turns: Sequence[str], signal_turn: int) -> Snapshot | None:
        """The snapshot of a label row; None for a label written before snapshots."""
        if not digest:
            return None
        anchor = None if signal_turn == NO_SIGNAL else int(signal_turn)
        return cls(tuple(TurnPrint.parse(str(t)) for t in turns), anchor)

    @property
    def sha256(self) -> str:
        """The hash an approval cites: of every fingerprint and the anchor."""
        lines = [p.encoded() for p in self.turns]
        lines.append(f"signal{SEP}{NO_SIGNAL if self.signal_turn is None else self.signal_turn}")
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def row(self) -> list[Any]:
        """The snapshot's values in :data:`SNAPSHOT_COLUMNS` order."""
        anchor = NO_SIGNAL if self.signal_turn is None else self.signal_turn
        return [self.sha256, [p.encoded() for p in self.turns], anchor]


@dataclass(frozen=True, slots=True)
class Drift:
    """How a conversation differs from a label's snapshot."""

    changes: tuple[str, ...]
    frozen: tuple[Turn, ...] | None
    """The snapshot's turns as stored now (expired texts empty), by turn index; None when
    a snapshot turn changed or is gone (the labelled text no longer exists)."""

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def reason(self) -> str:
        """One line: what changed, and what that means for the sample."""
        listed = "; ".join(self.changes[:MAX_LISTED_CHANGES])
        more = len(self.changes) - MAX_LISTED_CHANGES
        if more > 0:
            listed += f"; and {more} more"
        outcome = (
            "the labelled text no longer exists"
            if self.frozen is None
            else "exports keep the labelled turns only"
        )
        return f"conversation changed after labelling ({listed}): {outcome}; re-review it"


def compare(snapshot: Snapshot, current: Iterable[Turn]) -> Drift:
    """What changed in a conversation since ``snapshot`` was taken (see the module doc)."""
    now = sorted(current, key=lambda t: (t.turn_index, t.event_id))
    by_event: dict[str, Turn] = {}
    for turn in now:
        by_event.setdefault(turn.event_id, turn)
    changes: list[str] = []
    frozen: list[Turn] = []
    lost = False
    for printed in snapshot.turns:
        found = by_event.get(printed.event_id)
        where = f"turn {printed.turn_index} (event {printed.event_id})"
        if found is None:
            changes.append(f"{where} is gone")
            lost = True
        elif (found.turn_index, found.role) != (printed.turn_index, printed.role):
            changes.append(
                f"{where} moved to turn {found.turn_index} as {found.role} (was {printed.role})"
            )
            lost = True
        elif text_sha256(found.text) == printed.text_sha256 or not found.text:
            frozen.append(found)  # unchanged, or its text expired (the raw-text TTL)
        else:
            changes.append(f"the text of {where} changed")
            lost = True
    known = {p.event_id for p in snapshot.turns}
    indexes = {p.turn_index for p in snapshot.turns}
    for turn in now:
        if turn.event_id not in known:
            at = "existing" if turn.turn_index in indexes else "new"
            changes.append(f"event {turn.event_id} was added at {at} turn {turn.turn_index}")
    return Drift(tuple(changes), None if lost else tuple(frozen))


# ---------------------------------------------------------------------------- warehouse


def read_turns(warehouse: Warehouse, conversation_ids: Iterable[str]) -> dict[str, list[Turn]]:
    """The stored turns of each conversation, by turn index (one query)."""
    ids = sorted(set(conversation_ids))
    found: dict[str, list[Turn]] = {}
    if not ids:
        return found
    for cid, event_id, index, role, text in warehouse.query(_TURNS_SQL, {"ids": ids}).result_rows:
        found.setdefault(str(cid), []).append(Turn(str(event_id), int(index), str(role), str(text)))
    return found


def read_signal_turns(warehouse: Warehouse, conversation_ids: Iterable[str]) -> dict[str, int]:
    """The first turn a detector signal points at, per conversation that has one."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return {}
    rows = warehouse.query(_SIGNALS_SQL, {"ids": ids}).result_rows
    return {str(cid): int(index) for cid, index in rows}


def take(warehouse: Warehouse, conversation_ids: Iterable[str]) -> dict[str, Snapshot]:
    """A snapshot of each conversation as stored now (two queries for any number)."""
    ids = sorted(set(conversation_ids))
    turns = read_turns(warehouse, ids)
    signals = read_signal_turns(warehouse, ids)
    return {cid: Snapshot.of(turns.get(cid, ()), signals.get(cid)) for cid in ids}


@dataclass(frozen=True, slots=True)
class LabelDrift:
    """A labelled sample whose conversation changed since its (latest) label."""

    sample_id: str
    conversation_id: str
    revision: int
    snapshot: Snapshot
    drift: Drift

    def flag(self, now: datetime | None = None) -> SampleFlag:
        """The ``rereview`` flag of this change (one per label revision and snapshot)."""
        return SampleFlag(
            sample_id=self.sample_id,
            kind=FlagKind.REREVIEW,
            reason=(
                f"conversation {self.conversation_id} changed after label revision "
                f"{self.revision} (snapshot {self.snapshot.sha256[:12]}): re-review and relabel"
            ),
            actor=FLAG_ACTOR,
            ts=now or datetime.now(UTC),
            evidence={
                "cause": REVIEW_CAUSE,
                "label_revision": self.revision,
                "transcript_sha256": self.snapshot.sha256,
                "changes": list(self.drift.changes),
                "labelled_text_lost": self.drift.frozen is None,
            },
        )


def label_snapshots(
    warehouse: Warehouse, sample_ids: Iterable[str]
) -> dict[str, tuple[int, Snapshot]]:
    """(revision, snapshot) of each sample's latest label that has a snapshot."""
    ids = sorted(set(sample_ids))
    if not ids:
        return {}
    found = {}
    for sid, revision, digest, turns, anchor in warehouse.query(
        _LABELS_SQL, {"ids": ids}
    ).result_rows:
        snapshot = Snapshot.stored(str(digest), list(turns), int(anchor))
        if snapshot is not None:
            found[str(sid)] = (int(revision), snapshot)
    return found


def check(
    warehouse: Warehouse,
    samples: Mapping[str, str],
    *,
    snapshots: Mapping[str, tuple[int, Snapshot]] | None = None,
    turns: Mapping[str, Sequence[Turn]] | None = None,
) -> dict[str, LabelDrift]:
    """The samples (sample_id → conversation_id) whose conversation changed since their
    latest label. ``snapshots`` and ``turns`` are read when not given."""
    stored = label_snapshots(warehouse, samples) if snapshots is None else snapshots
    wanted = {sid: samples[sid] for sid in stored if sid in samples}
    current = read_turns(warehouse, wanted.values()) if turns is None else turns
    drifted = {}
    for sid, cid in wanted.items():
        revision, snapshot = stored[sid]
        drift = compare(snapshot, current.get(cid, ()))
        if drift.changed:
            drifted[sid] = LabelDrift(sid, cid, revision, snapshot, drift)
    return drifted


def flag(warehouse: Warehouse, drifted: Iterable[LabelDrift]) -> int:
    """Write the ``rereview`` flag of each changed sample (idempotent); returns how many."""
    flags = [d.flag() for d in drifted]
    for item in flags:
        logger.warning("%s needs re-review: %s", item.sample_id, item.reason)
    return write_flags(warehouse, flags)
