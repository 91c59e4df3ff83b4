"""Per-conversation detector state: a bounded in-process cache over the warehouse.

Why not a Faust table: the embedded Tansu broker answers ListOffsets with the last
batch's base offset + 1, which makes Faust's changelog recovery stop short or hang
after a crash (seen in the SIGKILL test). Keeping the state in ClickHouse, written in
the SAME batch as the rows it produced and after them, removes the dual write
altogether: a stored state never runs ahead of its rows, and a replay either finds
the state that goes with the rows already written (the detectors' replay guard skips
the events) or an older one (the events are re-applied and give the same ids).

The cache holds at most ``capacity`` conversations (LRU), so worker memory stays
flat over an endless stream; a miss costs one query per batch. It is cleared on
every rebalance, since another worker may have moved a conversation on meanwhile.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from analytics.warehouse import Warehouse
from detectors.exceptions import StateFormatError
from streams.capture import Entry

logger = logging.getLogger(__name__)

STATE_TABLE: Final = "conversation_state"

_LOAD_SQL: Final = (
    "SELECT conversation_id, argMax(state, revision) FROM conversation_state "
    "WHERE conversation_id IN {ids:Array(String)} GROUP BY conversation_id"
)


class StateStore:
    """Entries by conversation id: cache first, then the ``conversation_state`` table."""

    def __init__(self, warehouse: Warehouse, *, capacity: int) -> None:
        self._warehouse = warehouse
        self._capacity = capacity
        self._cache: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def cached(self, conversation_ids: Iterable[str]) -> dict[str, Entry]:
        found = {}
        for cid in conversation_ids:
            entry = self._cache.get(cid)
            if entry is not None:
                self._cache.move_to_end(cid)
                found[cid] = entry
        return found

    def fetch(self, conversation_ids: list[str]) -> dict[str, Entry]:
        """Read stored states (blocking: run it on the warehouse thread).

        An unreadable state (e.g. written by an older format) is dropped with a
        warning: the conversation starts afresh rather than stopping the agent.
        """
        if not conversation_ids:
            return {}
        rows = self._warehouse.query(_LOAD_SQL, {"ids": conversation_ids}).result_rows
        found = {}
        for cid, state in rows:
            try:
                found[str(cid)] = Entry.from_dict(orjson.loads(state))
            except (StateFormatError, orjson.JSONDecodeError, KeyError, TypeError) as e:
                logger.warning("conversation %s: unreadable stored state (%s); afresh", cid, e)
        return found

    async def fetch_async(self, conversation_ids: list[str]) -> dict[str, Entry]:
        """:meth:`fetch` on the reader thread: callers make sure no queued write holds them."""
        return await self._warehouse.run_read(self.fetch, conversation_ids)

    def remember(self, entries: dict[str, Entry]) -> None:
        """Cache entries just written (or just read), evicting the least recently used."""
        for cid, entry in entries.items():
            self._cache[cid] = entry
            self._cache.move_to_end(cid)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        self._cache.clear()


def state_rows(entries: dict[str, Entry]) -> list[list[Any]]:
    """``conversation_state`` rows for the entries a batch touched."""
    now = datetime.now(UTC)
    return [
        [
            cid,
            orjson.dumps(entry.to_dict()).decode(),
            entry.rollup.events,
            entry.state.last_ts or now,
        ]
        for cid, entry in entries.items()
    ]
