"""Per-user token buckets (429 with Retry-After) and a bounded LRU map."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from gateway.errors import RateLimitError

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A dict that keeps its ``size`` most recently used keys."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class RateLimiter:
    """``per_s`` requests per second per key, ``burst`` at once; ``per_s == 0`` is off."""

    def __init__(
        self,
        *,
        per_s: float,
        burst: int,
        keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_s = per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: Lru[str, tuple[float, float]] = Lru(keys)

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket, or raise :class:`RateLimitError`."""
        if self._per_s <= 0:
            return
        now = self._clock()
        tokens, at = self._buckets.get(key) or (self._burst, now)
        tokens = min(self._burst, tokens + (now - at) * self._per_s)
        if tokens < 1:
            self._buckets.put(key, (tokens, now))
            wait = (1 - tokens) / self._per_s
            msg = (
                f"user {key!r} is over {self._per_s:g} requests/s (burst {self._burst:g}); "
                f"retry in {wait:.1f}s"
            )
            raise RateLimitError(msg, retry_after_s=wait)
        self._buckets.put(key, (tokens - 1, now))
