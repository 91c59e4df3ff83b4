"""Where a label's problem types were first observed, following the model lineage.

A label records ``first_seen_version``: the earliest version (by the registry's
parent links) served in a conversation whose QA verdict or label carries one of
the label's problem types, the sample's own conversation included. Batched: one
query answers every problem type of a batch of labels, so the stream's QA
labelling costs a few queries per batch, not per verdict. ``conversations`` is read
without FINAL: a version that served a type in any revision of a conversation
observed it, and skipping the merge makes the scan three times cheaper.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from analytics.warehouse import Warehouse
from loraloop.lifecycle import first_seen_version

_OBSERVED_SQL: Final = """
SELECT t, groupUniqArray(model_version) FROM (
    SELECT arrayJoin(qa_problem_types) AS t, model_version FROM conversations
    WHERE hasAny(qa_problem_types, {types:Array(String)}) AND model_version != ''
    UNION ALL
    SELECT arrayJoin(problem_types) AS t, model_version FROM pool
    WHERE hasAny(problem_types, {types:Array(String)}) AND model_version != ''
)
WHERE has({types:Array(String)}, t)
GROUP BY t
"""

_OWN_VERSION_SQL: Final = (
    "SELECT sample_id, any(model_version) FROM samples FINAL "
    "WHERE sample_id IN {ids:Array(String)} AND model_version != '' GROUP BY sample_id"
)

_LINEAGE_SQL: Final = (
    "SELECT version, argMax(parent, updated_at) FROM model_versions GROUP BY version"
)


class FirstSeen:
    """First-seen versions for a batch of (sample, problem types), from three queries."""

    def __init__(
        self, warehouse: Warehouse, sample_ids: Iterable[str], problem_types: Iterable[str]
    ) -> None:
        types = sorted(set(problem_types))
        self._by_type: dict[str, set[str]] = defaultdict(set)
        if types:
            rows = warehouse.query(_OBSERVED_SQL, {"types": types}).result_rows
            for problem_type, versions in rows:
                self._by_type[str(problem_type)].update(str(v) for v in versions)
        ids = sorted(set(sample_ids))
        rows = warehouse.query(_OWN_VERSION_SQL, {"ids": ids}).result_rows if ids else []
        self._own = {str(sid): str(version) for sid, version in rows}
        self._lineage = {
            str(v): (str(p) or None) for v, p in warehouse.query(_LINEAGE_SQL).result_rows
        }

    def of(self, sample_id: str, problem_types: Iterable[str]) -> str:
        """The sample's first-seen version ('' when no version observed its types)."""
        observed: set[str] = set()
        for problem_type in problem_types:
            observed |= self._by_type.get(problem_type, set())
        own = self._own.get(sample_id)
        if own:
            observed.add(own)
        return first_seen_version(observed, self._lineage) or ""


def first_seen_of(warehouse: Warehouse, sample_id: str, problem_types: Iterable[str]) -> str:
    """The earliest version, following the registry's lineage, where a type was observed."""
    types = list(problem_types)
    return FirstSeen(warehouse, [sample_id], types).of(sample_id, types)
