"""Per-conversation detector state: the ``conversation_state`` table and a bounded cache.

Why not a Faust table: the embedded Tansu broker answers ListOffsets with the last
batch's base offset + 1, which makes Faust's changelog recovery stop short or hang
after a crash (seen in the SIGKILL test). Keeping the state in ClickHouse, written in
the SAME batch as the rows it produced and after them, removes the dual write
altogether: a stored state never runs ahead of its rows, and a replay either finds
the state that goes with the rows already written (the detectors' replay guard skips
the events) or an older one (the events are re-applied and give the same ids).

The cache (held by whoever runs detection, see :mod:`streams.capture_core`) keeps at
most ``capacity`` conversations (LRU), so memory stays flat over an endless stream;
the misses of a batch cost one query. It is cleared on every rebalance, since
another worker may have moved a conversation on meanwhile.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from detectors.exceptions import StateFormatError
from streams.capture import Entry

if TYPE_CHECKING:  # the capture process imports this module: no engine there
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

STATE_TABLE: Final = "conversation_state"

_LOAD_SQL: Final = (
    "SELECT conversation_id, argMax(state, revision) FROM conversation_state "
    "WHERE conversation_id IN {ids:Array(String)} GROUP BY conversation_id"
)


_PENDING_SQL: Final = (
    "SELECT conversation_id, argMax(state, revision) FROM conversation_state "
    "WHERE conversation_id IN (SELECT conversation_id FROM conversation_state WHERE pending > 0) "
    "GROUP BY conversation_id HAVING argMax(pending, revision) > 0"
)


def read_pending_states(warehouse: Warehouse) -> dict[str, str]:
    """The latest stored state of every conversation with events held for event order.

    Read after a start or a rebalance (see :attr:`streams.capture_core.Needs.restore`):
    those events are acked, so only their stored state brings them back to be released.
    """
    rows = warehouse.query(_PENDING_SQL).result_rows
    return {str(cid): str(state) for cid, state in rows}


def read_states(warehouse: Warehouse, conversation_ids: list[str]) -> dict[str, str]:
    """The latest stored state (JSON text) of each conversation that has one (blocking)."""
    if not conversation_ids:
        return {}
    rows = warehouse.query(_LOAD_SQL, {"ids": conversation_ids}).result_rows
    return {str(cid): str(state) for cid, state in rows}


class StateCache:
    """Entries by conversation id, least recently used evicted beyond ``capacity``."""

    def __init__(self, *, capacity: int) -> None:
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

    def load(
        self, stored: dict[str, str], *, keep: Callable[[Entry], bool] | None = None
    ) -> dict[str, Entry]:
        """Parse states read by :func:`read_states` and cache those ``keep`` accepts (all).

        An unreadable state (e.g. written by an older format) is dropped with a
        warning: the conversation starts afresh rather than stopping the agent.
        """
        found = {}
        for cid, state in stored.items():
            try:
                entry = Entry.from_dict(orjson.loads(state))
            except (StateFormatError, orjson.JSONDecodeError, KeyError, TypeError) as e:
                logger.warning("conversation %s: unreadable stored state (%s); afresh", cid, e)
                continue
            if keep is None or keep(entry):
                found[cid] = entry
        self.remember(found)
        return found

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
    """``conversation_state`` rows for the entries a batch touched (revision: its version)."""
    now = datetime.now(UTC)
    return [
        [
            cid,
            orjson.dumps(entry.to_dict()).decode(),
            entry.version,
            entry.state.last_ts or now,
            len(entry.order.pending),
        ]
        for cid, entry in entries.items()
    ]
