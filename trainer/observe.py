"""Read what the triggers look at from the warehouse (blocking; see :mod:`trainer.triggers`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from trainer.cycle_log import last_cycle_started_at
from trainer.service_config import TrainerSettings
from trainer.triggers import Observations, alert_since

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

DETECTOR_PREFIX = "detector:"
QA_PREFIX = "qa:"
_EPOCH = "1970-01-01 00:00:00"

_NEW_LABELS_SQL = """
SELECT problem_type, count()
FROM (
    SELECT p.problem_types AS types
    FROM pool AS p
    INNER JOIN (SELECT sample_id, ts FROM sample_labels FINAL) AS l ON l.sample_id = p.sample_id
    WHERE p.status = 'problem' AND p.corrected_response != ''
      AND l.ts > {since:DateTime64(3, 'UTC')}
      AND (p.label_simulated = false OR {simulated:Bool})
)
ARRAY JOIN types AS problem_type
GROUP BY problem_type
"""

_CONVERSATIONS_SQL = """
SELECT count() FROM conversations FINAL WHERE first_ts >= {since:DateTime64(3, 'UTC')}
"""

_FLAGGED_SQL = """
SELECT concat({detector:String}, name) AS signal, uniqExact(conversation_id)
FROM conversations FINAL ARRAY JOIN detectors AS name
WHERE first_ts >= {since:DateTime64(3, 'UTC')}
GROUP BY signal
UNION ALL
SELECT concat({qa:String}, name) AS signal, uniqExact(conversation_id)
FROM conversations FINAL ARRAY JOIN qa_problem_types AS name
WHERE first_ts >= {since:DateTime64(3, 'UTC')}
GROUP BY signal
"""


def new_labels_per_type(
    warehouse: Warehouse, since: datetime | None, *, include_simulated: bool
) -> dict[str, int]:
    """Problem samples labelled (with a corrected response) after ``since``, per type."""
    parameters = {"since": since or _EPOCH, "simulated": include_simulated}
    rows = warehouse.query(_NEW_LABELS_SQL, parameters).result_rows
    return {str(problem_type): int(count) for problem_type, count in rows}


def conversation_rates(warehouse: Warehouse, since: datetime) -> tuple[int, dict[str, int]]:
    """Conversations started since ``since``, and how many each detector / QA type flagged."""
    total = int(warehouse.query(_CONVERSATIONS_SQL, {"since": since}).result_rows[0][0])
    parameters = {"since": since, "detector": DETECTOR_PREFIX, "qa": QA_PREFIX}
    rows = warehouse.query(_FLAGGED_SQL, parameters).result_rows
    return total, {str(signal): int(count) for signal, count in rows}


def observe(warehouse: Warehouse, settings: TrainerSettings, now: datetime) -> Observations:
    """Everything :func:`trainer.triggers.due` needs, read at ``now``."""
    last = last_cycle_started_at(warehouse)
    conversations, flagged = conversation_rates(warehouse, alert_since(now, last, settings))
    return Observations(
        now=now,
        last_cycle_at=last,
        new_labels_per_type=new_labels_per_type(
            warehouse, last, include_simulated=settings.include_simulated_labels
        ),
        conversations=conversations,
        flagged=flagged,
    )
