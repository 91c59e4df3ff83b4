"""Errors of the statistics layer: bad inputs, named so the caller can fix the query."""

from __future__ import annotations

from loraloop.exceptions import LoraloopError


class StatsInputError(LoraloopError, ValueError):
    """Numbers handed to a statistic are impossible (negative counts, π outside (0, 1], ...).

    The message names the argument; fix the query or aggregation that produced it.
    """
