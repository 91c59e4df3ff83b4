"""The HTTP status of each loraloop error the console answers with."""

from __future__ import annotations

from typing import Final

from analytics import pool
from analytics.console.exceptions import ConsoleError
from analytics.exceptions import WarehouseError
from loraloop.exceptions import LoraloopError

STATUS_OF: Final[tuple[tuple[type[LoraloopError], int], ...]] = (
    (pool.SampleNotFound, 404),
    (pool.ActionForbidden, 403),
    (pool.ActionConflict, 409),
    (pool.InvalidAction, 422),
    (WarehouseError, 503),
)
SERVER_ERROR: Final = 500


def status_of(error: LoraloopError) -> int:
    """The HTTP status of a loraloop error."""
    if isinstance(error, ConsoleError):
        return error.status_code
    for kind, status in STATUS_OF:
        if isinstance(error, kind):
            return status
    return SERVER_ERROR
