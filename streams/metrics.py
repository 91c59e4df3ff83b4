"""Prometheus metrics of the worker (served on ``/metrics`` by its web server)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("loraloop_events_in_total", "Events read from a source topic.", ["topic"])
EVENTS_WRITTEN = Counter(
    "loraloop_events_written_total", "Valid events written to the warehouse.", ["topic"]
)
DEAD_LETTERS = Counter(
    "loraloop_dead_letters_total", "Payloads sent to the dead-letter topic.", ["topic"]
)
ROWS_REFUSED = Counter(
    "loraloop_rows_refused_total",
    "Rows the warehouse refused as data (dead-lettered, the rest of the batch written).",
    ["table"],
)
CAPTURE_FAILURES = Counter(
    "loraloop_capture_failures_total",
    "Capture batches whose processing failed and were isolated event by event.",
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
BROKER_UP = Gauge(
    "loraloop_broker_up",
    "1 while the Kafka bootstrap servers answer the worker's probe, 0 while none does.",
)
BROKER_GAPS = Counter(
    "loraloop_broker_gaps_total", "Times the broker became unreachable from the worker."
)
BROKER_GAP_SECONDS = Histogram(
    "loraloop_broker_gap_seconds",
    "How long the broker stayed unreachable, per gap (to the probe interval).",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf")),
)
LATE_EVENTS = Counter(
    "loraloop_late_events_total",
    "Events later than the allowed lateness (stored, flagged in late_events, applied at once).",
    ["topic"],
)
CAPTURE_PENDING = Gauge(
    "loraloop_capture_pending_conversations",
    "Conversations with events held for event order (0 when every event read is final).",
)
