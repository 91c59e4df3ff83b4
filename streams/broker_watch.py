"""Is the Kafka broker reachable from the worker, and for how long was it not.

Why: when the broker goes away, Faust and aiokafka reconnect on their own and keep
the worker alive, but they say so only in client logs, retried forever; nothing
tells an operator that no event is arriving. :class:`BrokerWatch` turns that into
signals: a WARNING when the broker becomes unreachable, a WARNING "broker back
after X s" when it answers again, ``/health`` 503 with ``broker: "unreachable since
..."`` meanwhile, a count of gaps with their durations, and the metrics
``loraloop_broker_up``, ``loraloop_broker_gaps_total`` and
``loraloop_broker_gap_seconds``.

What: a probe (a callable returning True when the broker answers) run every
``LORALOOP_STREAM__BROKER_PROBE_INTERVAL_S``; gaps are timed from the first failed
probe to the first one that succeeds, so to the probe interval. The probe of
:func:`bootstrap_probe` sends a Kafka ApiVersions request (allowed before any
authentication) on PLAINTEXT and SASL_PLAINTEXT, and only opens a TCP connection on
SSL and SASL_SSL (no TLS handshake of its own); the broker counts as up when any
bootstrap server answers. The state machine (:meth:`BrokerWatch.observe`) has no I/O,
so the tests drive it with a fake probe and clock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loraloop.settings import KafkaSettings
from streams import metrics
from streams.broker import kafka_answers

logger = logging.getLogger(__name__)

Probe = Callable[[], bool]

_PROBE_TIMEOUT_S = 1.0
_KEPT_GAPS = 20


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            servers.append((host.strip("[]"), int(port)))
    return servers


def _tcp_answers(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def bootstrap_probe(
    bootstrap: str, kafka: KafkaSettings | None = None, *, timeout: float = _PROBE_TIMEOUT_S
) -> Probe:
    """A probe of ``bootstrap`` (host:port[,host:port]) fit for its security protocol."""
    servers = _servers(bootstrap)
    tls = kafka is not None and kafka.uses_tls

    def probe() -> bool:
        check = _tcp_answers if tls else kafka_answers
        return any(check(host, port, timeout) for host, port in servers)

    return probe


@dataclass(frozen=True)
class Gap:
    """One stretch of time the broker did not answer (``seconds`` None while it lasts)."""

    started_at: datetime
    seconds: float | None


class BrokerWatch:
    """Tracks the broker's reachability from successive probe results."""

    def __init__(
        self,
        probe: Probe,
        *,
        bootstrap: str,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.probe = probe
        self.bootstrap = bootstrap
        self._clock = clock
        self._now = now
        self.down_since: datetime | None = None
        self._down_at: float | None = None
        self.gap_count = 0
        self.gaps: deque[Gap] = deque(maxlen=_KEPT_GAPS)
        metrics.BROKER_UP.set(1)

    @property
    def up(self) -> bool:
        return self.down_since is None

    @property
    def last_gap_s(self) -> float | None:
        """Length of the last gap that ended; None before any."""
        for gap in reversed(self.gaps):
            if gap.seconds is not None:
                return gap.seconds
        return None

    def observe(self, answered: bool) -> None:
        """Record one probe result; a gap opens on the first failure and closes on success."""
        if not answered and self.up:
            self.down_since = self._now()
            self._down_at = self._clock()
            self.gap_count += 1
            self.gaps.append(Gap(self.down_since, None))
            metrics.BROKER_UP.set(0)
            metrics.BROKER_GAPS.inc()
            logger.warning(
                "broker %s unreachable (gap %d); the worker keeps retrying",
                self.bootstrap,
                self.gap_count,
            )
        elif answered and not self.up:
            seconds = round(self._clock() - (self._down_at or self._clock()), 3)
            self.gaps[-1] = Gap(self.gaps[-1].started_at, seconds)
            self.down_since = None
            self._down_at = None
            metrics.BROKER_UP.set(1)
            metrics.BROKER_GAP_SECONDS.observe(seconds)
            logger.warning(
                "broker %s back after %.1f s (gap %d)", self.bootstrap, seconds, self.gap_count
            )

    def check(self) -> bool:
        """Probe once (blocking) and record the result."""
        answered = self.probe()
        self.observe(answered)
        return answered

    async def check_async(self) -> bool:
        """:meth:`check` off the event loop (the probe blocks up to its timeout)."""
        answered = await asyncio.to_thread(self.probe)
        self.observe(answered)
        return answered

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports: ``broker`` ("ok" or since when it is unreachable) and gaps."""
        if self.down_since is None:
            broker = "ok"
        else:
            down_s = self._clock() - (self._down_at or self._clock())
            broker = f"unreachable since {self.down_since.isoformat()} ({down_s:.0f} s)"
        return {
            "broker": broker,
            "broker_gaps": self.gap_count,
            "last_broker_gap_s": self.last_gap_s,
        }
