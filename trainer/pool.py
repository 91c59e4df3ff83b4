"""Read the training pool from the warehouse into :class:`~trainer.records.PoolSample` records.

What a cycle trains on:

- every baseline sample (``core_baseline``, ``secondary_baseline``,
  ``candidate_baseline``) with a corrected response;
- every problem sample (status ``problem``) with a non-empty corrected
  response, whether or not an earlier version trained on it: a problem stays in
  training while it is unsolved (its status is still ``problem``). Each sample
  carries ``times_trained``: how many gate-passed versions already trained on
  its current label, i.e. held it in their manifest's ``trained_sample_ids``
  and were created after it was labelled (see :func:`trained_sample_ids`; a
  corrected label starts the count again). Gated-out or failed cycles count for
  nobody. The dataset builder down-weights a problem trained often enough
  (``DatasetConfig.unsolved_cycles_before_downweight``).

The chat context of each sample comes from ``turns`` (see :mod:`trainer.transcripts`),
frozen to what was labelled: a label carries the snapshot of its transcript
(:mod:`analytics.snapshots`), so turns added after the label are left out, the context is
cut at the anchor the labeller saw, and a sample whose labelled text changed or is gone
is skipped (:data:`SKIP_CHANGED`). Either change flags the sample for re-review.
Blocking; the service calls these through ``Warehouse.run``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from analytics import snapshots
from analytics.snapshots import Snapshot
from trainer.manifest import MANIFEST_FILE
from trainer.records import BASELINE_TIERS, PoolSample, Tier
from trainer.registry import Registry
from trainer.transcripts import TurnRow, context_messages
from trainer.versions import as_utc

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

SKIP_NO_CONTEXT = "no usable transcript (no user turn before the corrected reply, or text expired)"
SKIP_CHANGED = "the labelled transcript changed after labelling (flagged for re-review)"
#: The manifest key of the samples a version trained on, and the older key that
#: listed every pool id (read only for manifests written before the first existed).
TRAINED_KEY = "trained_sample_ids"
LEGACY_SOURCE_KEY = "source_sample_ids"

_POOL_SQL = """
SELECT p.sample_id, p.conversation_id, p.status, p.problem_types, p.corrected_response,
       p.first_seen_version, p.status_changed_at, p.label_simulated, l.ts,
       l.revision, l.transcript_sha256, l.transcript_turns, l.signal_turn
FROM pool AS p
INNER JOIN (
    SELECT sample_id, ts, revision, transcript_sha256, transcript_turns, signal_turn
    FROM sample_labels FINAL
) AS l ON l.sample_id = p.sample_id
WHERE has({statuses:Array(String)}, p.status) AND p.corrected_response != ''
  AND (p.label_simulated = false OR {simulated:Bool})
ORDER BY p.sample_id
"""

_TURNS_SQL = """
SELECT conversation_id, turn_index, role, text
FROM turns FINAL
WHERE has({ids:Array(String)}, conversation_id)
ORDER BY conversation_id, turn_index
"""

_SIGNALS_SQL = """
SELECT conversation_id, min(assumeNotNull(turn_index))
FROM signals FINAL
WHERE has({ids:Array(String)}, conversation_id) AND turn_index IS NOT NULL
GROUP BY conversation_id
"""


@dataclass(frozen=True)
class LabelledRow:
    """A pool row with a usable label, before its transcript is attached."""

    sample_id: str
    conversation_id: str
    status: Tier
    problem_types: list[str]
    corrected_response: str
    first_seen_version: str | None
    updated_at: datetime
    labelled_at: datetime
    revision: int = 0
    snapshot: Snapshot | None = None
    """The transcript the label was written against; None for labels older than snapshots."""


@dataclass
class PoolRead:
    """The samples a cycle trains on, and why others were left out (sample_id → reason)."""

    samples: list[PoolSample] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Samples per tier, and how many were skipped."""
        per: dict[str, int] = {}
        for sample in self.samples:
            per[sample.status.value] = per.get(sample.status.value, 0) + 1
        return {**dict(sorted(per.items())), "skipped": len(self.skipped)}


def trained_sample_ids(registry: Registry) -> dict[str, list[datetime]]:
    """sample_id → creation times (sorted) of the gate-passed versions that trained on it."""
    trained: dict[str, list[datetime]] = {}
    for info in registry.versions():
        manifest_path = registry.path(info.name) / MANIFEST_FILE
        if not info.gate_passed or not manifest_path.is_file():
            continue
        manifest: dict[str, Any] = orjson.loads(manifest_path.read_bytes())
        key = TRAINED_KEY if TRAINED_KEY in manifest else LEGACY_SOURCE_KEY
        for sample_id in manifest.get(key, []):
            trained.setdefault(str(sample_id), []).append(info.created_at)
    return {sid: sorted(times) for sid, times in trained.items()}


def times_trained(row: LabelledRow, trained: dict[str, list[datetime]]) -> int:
    """Gate-passed versions that trained on this label (created at or after it)."""
    return sum(1 for created in trained.get(row.sample_id, ()) if created >= row.labelled_at)


def _labelled(row: Sequence[Any]) -> LabelledRow:
    sid, conversation, status, types, response, first_seen, changed, _sim, labelled = row[:9]
    revision, digest, prints, anchor = row[9:]
    return LabelledRow(
        sample_id=str(sid),
        conversation_id=str(conversation),
        status=Tier(status),
        problem_types=[str(t) for t in types],
        corrected_response=str(response),
        first_seen_version=str(first_seen) or None,
        updated_at=as_utc(max(changed, labelled)),
        labelled_at=as_utc(labelled),
        revision=int(revision),
        snapshot=Snapshot.stored(str(digest), list(prints), int(anchor)),
    )


def read_labelled(warehouse: Warehouse, *, include_simulated: bool) -> list[LabelledRow]:
    """Baseline and problem rows with a corrected response (the latest label of each)."""
    statuses = [t.value for t in (*sorted(BASELINE_TIERS), Tier.PROBLEM)]
    result = warehouse.query(_POOL_SQL, {"statuses": statuses, "simulated": include_simulated})
    return [_labelled(row) for row in result.result_rows]


def read_transcripts(
    warehouse: Warehouse, conversation_ids: Iterable[str]
) -> tuple[dict[str, list[TurnRow]], dict[str, int]]:
    """Turns per conversation, and the first signalled turn index per conversation."""
    ids = sorted(set(conversation_ids))
    turns: dict[str, list[TurnRow]] = {}
    if not ids:
        return turns, {}
    for conversation, index, role, text in warehouse.query(_TURNS_SQL, {"ids": ids}).result_rows:
        turns.setdefault(str(conversation), []).append(TurnRow(int(index), str(role), str(text)))
    signal_rows = warehouse.query(_SIGNALS_SQL, {"ids": ids}).result_rows
    return turns, {str(c): int(i) for c, i in signal_rows}


def frozen_context(
    row: LabelledRow, current: Sequence[snapshots.Turn]
) -> tuple[list[TurnRow], int | None, snapshots.LabelDrift | None]:
    """The turns and anchor a frozen label was written against, as stored now, and the
    change when the conversation changed since (turns ``[]`` when the labelled text is
    lost). ``row.snapshot`` must be set."""
    snapshot = row.snapshot
    assert snapshot is not None  # noqa: S101 (callers check)
    drift = snapshots.compare(snapshot, current)
    change = (
        snapshots.LabelDrift(row.sample_id, row.conversation_id, row.revision, snapshot, drift)
        if drift.changed
        else None
    )
    kept = [TurnRow(t.turn_index, t.role, t.text) for t in drift.frozen or ()]
    return kept, snapshot.signal_turn, change


def read_pool(warehouse: Warehouse, *, registry: Registry, include_simulated: bool) -> PoolRead:
    """The pool samples of this cycle, with their chat context, sorted by sample_id.

    Each frozen label's context is the transcript it was labelled on (see the module
    doc); samples whose conversation changed are flagged for re-review, and skipped
    with :data:`SKIP_CHANGED` when the labelled text no longer exists.
    """
    trained = trained_sample_ids(registry)
    read = PoolRead()
    rows = read_labelled(warehouse, include_simulated=include_simulated)
    turns, signals = read_transcripts(warehouse, (r.conversation_id for r in rows))
    frozen_ids = {r.conversation_id for r in rows if r.snapshot is not None}
    current = snapshots.read_turns(warehouse, frozen_ids) if frozen_ids else {}
    changed: list[snapshots.LabelDrift] = []
    for row in rows:
        context, anchor = turns.get(row.conversation_id, []), signals.get(row.conversation_id)
        if row.snapshot is not None:
            context, anchor, change = frozen_context(row, current.get(row.conversation_id, ()))
            if change is not None:
                changed.append(change)
                if change.drift.frozen is None:
                    read.skipped[row.sample_id] = f"{SKIP_CHANGED}: {change.drift.reason}"
                    continue
        messages = context_messages(context, signal_turn=anchor)
        if messages is None:
            read.skipped[row.sample_id] = SKIP_NO_CONTEXT
            continue
        read.samples.append(
            PoolSample(
                sample_id=row.sample_id,
                status=row.status,
                problem_types=row.problem_types,
                messages=messages,
                corrected_response=row.corrected_response,
                first_seen_version=row.first_seen_version,
                updated_at=row.updated_at,
                times_trained=times_trained(row, trained),
            )
        )
    if changed:
        snapshots.flag(warehouse, changed)
    logger.info("pool read: %s", read.counts())
    return read
