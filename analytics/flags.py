"""Sample flags: why a sample needs a person's eyes again (the ``sample_flags`` table).

A flag changes no status; it is an audited note the console and ``loraloop samples``
show next to the sample. Kinds:

- ``not_learned``: a baseline sample whose content recurred as a new problem, so the
  model did not learn it (the dataset builder trains the problem and flags the sample);
- ``rereview``: an approval made on the evidence of a version that was rolled back;
- ``proposal_withdrawn``: a pending promotion proposal of a rolled-back version;
- ``downweighted``: a problem still unsolved after the configured number of cycles.

Blocking; async callers go through ``Warehouse.run``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

TABLE = "sample_flags"
COLUMNS: tuple[str, ...] = (
    "flag_id", "sample_id", "kind", "reason", "actor", "version", "evidence", "ts",
)  # fmt: skip


class FlagKind(StrEnum):
    """What a flag says about its sample."""

    NOT_LEARNED = "not_learned"
    REREVIEW = "rereview"
    PROPOSAL_WITHDRAWN = "proposal_withdrawn"
    DOWNWEIGHTED = "downweighted"


@dataclass(frozen=True)
class SampleFlag:
    """One flag; ``flag_id`` is derived from (sample, kind, version, reason): writing it
    again is idempotent."""

    sample_id: str
    kind: FlagKind
    reason: str
    actor: str
    ts: datetime
    version: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def flag_id(self) -> str:
        """A stable id: the same flag written twice is one row."""
        key = "\x1f".join((self.sample_id, self.kind.value, self.version, self.reason))
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def row(self) -> list[Any]:
        """The row in ``COLUMNS`` order."""
        evidence = orjson.dumps(dict(self.evidence), option=orjson.OPT_SORT_KEYS).decode()
        return [
            self.flag_id, self.sample_id, self.kind.value, self.reason, self.actor,
            self.version, evidence, self.ts,
        ]  # fmt: skip


def write_flags(warehouse: Warehouse, flags: Sequence[SampleFlag]) -> int:
    """Insert ``flags``; returns how many were written."""
    if flags:
        warehouse.insert(TABLE, [f.row() for f in flags], column_names=COLUMNS)
    return len(flags)


_READ_SQL = """
SELECT sample_id, kind, reason, actor, version, evidence, ts
FROM sample_flags FINAL
WHERE (NOT {filter_ids:Bool} OR has({ids:Array(String)}, sample_id))
  AND (NOT {filter_kind:Bool} OR kind = {kind:String})
ORDER BY ts, sample_id, kind
"""


def read_flags(
    warehouse: Warehouse,
    *,
    sample_ids: Sequence[str] | None = None,
    kind: FlagKind | None = None,
) -> list[SampleFlag]:
    """The flags of ``sample_ids`` (all when None), of one ``kind`` (all when None)."""
    result = warehouse.query(
        _READ_SQL,
        {
            "filter_ids": sample_ids is not None,
            "ids": list(sample_ids or ()),
            "filter_kind": kind is not None,
            "kind": kind.value if kind else "",
        },
    )
    return [
        SampleFlag(
            sample_id=str(s),
            kind=FlagKind(k),
            reason=str(r),
            actor=str(a),
            version=str(v),
            evidence=orjson.loads(e) if e else {},
            ts=t,
        )  # fmt: skip
        for s, k, r, a, v, e, t in result.result_rows
    ]
