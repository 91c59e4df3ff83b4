"""Prometheus metrics of the worker (served on ``/metrics`` by its web server)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("loraloop_events_in_total", "Events read from a source topic.", ["topic"])
EVENTS_WRITTEN = Counter(
    "loraloop_events_written_total", "Valid events written to the warehouse.", ["topic"]
)
DEAD_LETTERS = Counter(
    "loraloop_dead_letters_total", "Payloads sent to the dead-letter topic.", ["topic"]
)
SINK_RETRIES = Counter(
    "loraloop_sink_retries_total", "Warehouse writes retried after a failure.", ["table"]
)
SINK_BATCH_SECONDS = Histogram(
    "loraloop_sink_batch_seconds", "Time to write one batch to the warehouse.", ["topic"]
)
SIGNALS = Counter("loraloop_signals_total", "Detector signals fired.", ["detector"])
SAMPLES = Counter(
    "loraloop_sample_writes_total", "Captured-sample rows written (one sample may update)."
)
CONSUMER_LAG = Gauge(
    "loraloop_consumer_lag",
    "Messages on a partition not yet written to the warehouse (high watermark - written).",
    ["topic", "partition"],
)
