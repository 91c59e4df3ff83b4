"""Promotion proposals for problem types a canary solved (design: Training cycle, step 8).

When a comparison calls a type ``solved_candidate``, each sample of that type that the
new version was trained on and that is still a ``problem`` gets a proposal
``problem → candidate_baseline`` in ``sample_transitions`` (``proposal = true``, role
system): metrics only propose, an approver decides. The evidence is the type's verdict.
A sample that already holds a proposal from this version is skipped, so looking again
writes nothing twice. Rows go through ``analytics.pool_log`` (the audit log's writer):
seq continues the sample's log and ts never goes back before its latest row.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from analytics.pool_log import TRANSITION_COLUMNS, transition_row, utc
from loraloop.lifecycle import ActorKind, Role, SampleStatus, Transition, build_transition

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

_CANDIDATES_SQL = """
SELECT p.sample_id, t.next_seq, t.last_ts
FROM pool AS p
LEFT JOIN (
    SELECT sample_id, max(seq) + 1 AS next_seq, max(ts) AS last_ts
    FROM sample_transitions FINAL GROUP BY sample_id
) AS t ON t.sample_id = p.sample_id
WHERE p.status = {status:String}
  AND has(p.problem_types, {problem_type:String})
  AND (
      ({trained_ids_given:Bool} AND p.sample_id IN {trained_ids:Array(String)})
      OR (NOT {trained_ids_given:Bool} AND has(p.trained_in_versions, {version:String}))
  )
  AND p.sample_id NOT IN (
      SELECT sample_id FROM sample_transitions FINAL
      WHERE proposal AND to_status = {target:String} AND actor = {actor:String}
        AND JSONExtractString(evidence, 'version') = {version:String}
  )
ORDER BY p.sample_id
"""


def propose_solved(
    warehouse: Warehouse,
    *,
    version: str,
    verdicts: Mapping[str, Mapping[str, Any]],
    actor: str,
    ts: datetime,
    trained_sample_ids: Collection[str] | None = None,
) -> list[Transition]:
    """Write a proposal for every eligible sample of each solved type; returns them.

    ``verdicts`` maps each solved type to its rendered metric result (the evidence).
    ``trained_sample_ids``: the samples the version was trained on (its dataset
    manifest); None reads ``pool.trained_in_versions`` instead.
    """
    written: list[Transition] = []
    proposed: set[str] = set()
    for problem_type, verdict in sorted(verdicts.items()):
        for sample_id, seq, last_ts in _candidates(
            warehouse, version, problem_type, actor, trained_sample_ids
        ):
            if sample_id in proposed:
                continue
            written.append(
                build_transition(
                    sample_id,
                    SampleStatus.PROBLEM,
                    SampleStatus.CANDIDATE_BASELINE,
                    actor=actor,
                    role=Role.SYSTEM,
                    actor_kind=ActorKind.SYSTEM,
                    seq=seq,
                    ts=max(ts, last_ts),
                    reason=f"{problem_type} solved by {version}",
                    evidence={"version": version, "problem_type": problem_type, **verdict},
                    proposal=True,
                )
            )
            proposed.add(sample_id)
    rows = [transition_row(t) for t in written]
    warehouse.insert("sample_transitions", rows, column_names=TRANSITION_COLUMNS)
    logger.info("proposed %d samples of %s for candidate_baseline", len(rows), version)
    return written


def _candidates(
    warehouse: Warehouse,
    version: str,
    problem_type: str,
    actor: str,
    trained_sample_ids: Collection[str] | None,
) -> list[tuple[str, int, datetime]]:
    result = warehouse.query(
        _CANDIDATES_SQL,
        {
            "status": SampleStatus.PROBLEM.value,
            "target": SampleStatus.CANDIDATE_BASELINE.value,
            "problem_type": problem_type,
            "version": version,
            "actor": actor,
            "trained_ids_given": trained_sample_ids is not None,
            "trained_ids": sorted(trained_sample_ids or ()),
        },
    )
    return [(str(s), int(q), utc(t)) for s, q, t in result.result_rows]
