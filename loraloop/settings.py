"""Configuration: one pydantic-settings class per component, env prefix ``LORALOOP_``.

Every default is documented on its field; ``loraloop config`` prints the
effective values. Nested fields use ``__`` (``LORALOOP_STREAM__BATCH_SIZE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_nested_delimiter="__", extra="ignore")


class StreamSettings(BaseSettings):
    """The Faust worker: consumer group, batching into ClickHouse, broker timeouts."""

    model_config = _config("LORALOOP_STREAM__")

    app_id: str = Field("loraloop", description="Faust app id, also the consumer group.")
    topic_prefix: str = Field(
        "", description="Prepended to every topic name; lets several loops share a cluster."
    )
    partitions: int = Field(
        4, ge=1, description="Partitions of every source topic (all co-partitioned)."
    )
    batch_size: int = Field(
        4000,
        ge=1,
        description=(
            "Events per ClickHouse insert at most (an embedded-engine insert costs ~5 ms "
            "however small, and every insert makes a part to merge, so large batches carry "
            "the throughput; at low load a batch closes after batch_within_s anyway)."
        ),
    )
    batch_within_s: float = Field(
        0.5, gt=0, description="Flush a partial batch after this many seconds."
    )
    retry_initial_s: float = Field(0.2, gt=0, description="First sink retry back-off.")
    retry_max_s: float = Field(10.0, gt=0, description="Largest sink retry back-off.")
    capture_failure_attempts: int = Field(
        3,
        ge=1,
        description=(
            "Attempts at a capture batch in which no event can be processed (the failure is"
            " the pipeline's) before each of its events is dead-lettered with the reason."
        ),
    )
    event_order: bool = Field(
        True,
        description=(
            "Apply a conversation's events to the detectors in event order, once the "
            "watermark passes them, so detections do not depend on the order in which the "
            "topics are read. Off: in arrival order, at once."
        ),
    )
    allowed_lateness_s: float = Field(
        5.0,
        ge=0,
        description=(
            "Event-time lateness capture allows: a conversation's events are applied to the "
            "detectors in event order (ts, turn_index, kind, event_id) once a partition's "
            "watermark (the earliest of its topics' latest event times, minus this) passes "
            "them; an event behind one already applied is stored, flagged in late_events "
            "and counted (loraloop_late_events_total). `loraloop replay` orders a file as a "
            "whole (inf)."
        ),
    )
    watermark_idle_s: float = Field(
        5.0,
        gt=0,
        description=(
            "A topic-partition read to its end that delivered nothing for this long no "
            "longer holds its partition's watermark back; when none of a partition's topics "
            "delivered, every pending event there is final (the end of a stream, a quiet "
            "producer)."
        ),
    )
    replay_watermark_idle_s: float = Field(
        2.0,
        gt=0,
        description="watermark_idle_s of `loraloop replay`: how long after the last event of "
        "the file its pending events become final.",
    )
    max_pending_events: int = Field(
        64,
        ge=1,
        description="Events of one conversation held for event order at most; beyond, the "
        "oldest are applied (bounds the state of a conversation).",
    )
    max_pending_conversations: int = Field(
        10_000,
        ge=1,
        description="Conversations with events held for event order at most per worker; "
        "beyond, the oldest are applied in full (bounds memory in a backfill).",
    )
    session_timeout_s: float = Field(
        6.0,
        gt=0,
        description="Consumer session timeout. Tansu makes a group join wait half of it.",
    )
    heartbeat_interval_s: float = Field(1.0, gt=0, description="Consumer heartbeat interval.")
    web_port: int = Field(
        0, ge=0, le=65535, description="Worker HTTP port (health, metrics); 0 picks a free one."
    )
    web_host: str = Field(
        "127.0.0.1",
        description="Worker HTTP bind address: /health and /metrics answer there without a "
        "key (probes, Prometheus); every other page needs the service key.",
    )
    state_cache_size: int = Field(
        10_000,
        ge=1,
        description="Conversations whose detector state the worker keeps in memory (LRU, "
        "about 6 KB each); the rest are read back from the conversation_state table.",
    )
    capture_process: bool = Field(
        True,
        description="Run decoding and the detectors in a child process of the worker: the "
        "worker's event loop keeps Faust's per-message work and the two use two cores. Off: "
        "all on the event loop (one core, or a host that forbids child processes).",
    )
    lag_interval_s: float = Field(
        5.0, gt=0, description="How often consumer lag is measured for /metrics and /health."
    )
    stuck_after_s: float = Field(
        60.0,
        gt=0,
        description='/health turns 503 ("stuck: lag N, no progress since ...") when a '
        "partition has had lag for this long without its written offset advancing, even with "
        "no error anywhere (a stage or a warehouse call that never returns).",
    )
    service_key: SecretStr | None = Field(
        None,
        description="Bearer key every worker page but /health and /metrics requires "
        "(/api/counts, Faust's /router/...), and GET /v1/route, /api/docs and /openapi.json "
        "of `loraloop up`'s console; empty: generated once into <data_dir>/service.key "
        "(mode 0600) and reused.",
    )
    broker_probe_interval_s: float = Field(
        2.0,
        gt=0,
        description="How often the worker probes the Kafka bootstrap servers; a broker outage "
        "(/health 503, the loraloop_broker_* metrics) is timed to this resolution.",
    )
    broker_storage: Literal["memory", "disk"] = Field(
        "memory",
        description="Storage of the embedded Tansu broker: memory (a broker restart loses every "
        "topic, record and committed offset) or disk (kept in <data_dir>/broker, so a restarted "
        "broker carries on). Unused with LORALOOP_KAFKA_BOOTSTRAP.",
    )
    tier_cache_size: int = Field(
        100_000, ge=1, description="User tiers cached by the worker for downvote detection."
    )
    replay_timeout_s: float = Field(
        600.0, gt=0, description="`loraloop replay` gives up when not done after this long."
    )
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replicas of every topic loraloop creates (source topics, DLQ, the worker's "
        "changelog); 3 on a production cluster.",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of the topics loraloop creates; empty: the broker's.",
    )
    retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        ge=-1,
        description="retention.ms of the source topics (default 7 days; -1 keeps forever). "
        "llm.users is compacted instead.",
    )
    dlq_retention_ms: int = Field(
        30 * 24 * 3600 * 1000,
        ge=-1,
        description="retention.ms of the dead-letter topic (default 30 days; -1 forever).",
    )


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """Kafka client security: one place for the worker (Faust), the producer and the admin.

    Leave it at PLAINTEXT for the embedded broker. SASL needs a username and a password;
    SSL files are read only with ``SSL`` or ``SASL_SSL``.
    """

    model_config = _config("LORALOOP_KAFKA__")

    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)."
    )
    sasl_username: str = Field("", description="SASL user (required with SASL_*).")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (required with SASL_*)."
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates; empty: system CAs."
    )
    ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; empty: none."
    )
    ssl_keyfile: Path | None = Field(None, description="The client certificate's private key.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of the private key, if it is encrypted."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names its host."
    )
    allow_plaintext_sasl: bool = Field(
        False,
        description="Allow SASL_PLAINTEXT with PLAIN (the password crosses the network in "
        "clear); for a private test network only.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        if sasl and not (self.sasl_username and self.sasl_password):
            msg = (
                f"LORALOOP_KAFKA__SECURITY_PROTOCOL={protocol} needs LORALOOP_KAFKA__SASL_USERNAME "
                "and LORALOOP_KAFKA__SASL_PASSWORD"
            )
            raise ValueError(msg)
        if protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            if not self.allow_plaintext_sasl:
                msg = (
                    "SASL PLAIN over SASL_PLAINTEXT sends the password in clear: use SASL_SSL, a "
                    "SCRAM mechanism, or set LORALOOP_KAFKA__ALLOW_PLAINTEXT_SASL=true"
                )
                raise ValueError(msg)
        files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if any(files) and not self.uses_tls:
            msg = f"LORALOOP_KAFKA__SSL_* files need SSL or SASL_SSL, not {protocol}"
            raise ValueError(msg)
        if self.ssl_keyfile and not self.ssl_certfile:
            msg = "LORALOOP_KAFKA__SSL_KEYFILE needs LORALOOP_KAFKA__SSL_CERTFILE"
            raise ValueError(msg)
        return self

    @property
    def uses_tls(self) -> bool:
        """True when the connection to the brokers is encrypted."""
        return self.security_protocol in {"SSL", "SASL_SSL"}


class WarehouseSettings(BaseSettings):
    """ClickHouse: where it is and how raw text is retained."""

    model_config = _config("LORALOOP_WAREHOUSE__")

    text_ttl_days: int = Field(
        365, ge=1, description="Raw conversation text is dropped after this many days."
    )
    database: str = Field("loraloop", description="ClickHouse database holding every table.")
    cluster: str = Field(
        "",
        description="ClickHouse cluster name (remote_servers); set, migrations create "
        "Replicated*MergeTree `<table>_local` tables ON CLUSTER with Distributed tables "
        "`<table>` over them. Empty: one server (or the embedded engine).",
    )
    embedded_malloc_conf: str = Field(
        "dirty_decay_ms:0,muzzy_decay_ms:0",
        description="jemalloc options of the embedded chdb engine (set as JE_MALLOC_CONF "
        "before it loads; an existing JE_MALLOC_CONF wins). Returning freed pages at once "
        "keeps a long-running worker's memory flat; empty keeps jemalloc's defaults.",
    )
    replication_path: str = Field(
        "/clickhouse/tables/{shard}/{database}/{table}",
        description="Keeper path of each replicated table in cluster mode; {table} is filled "
        "in by loraloop, {shard} and {database} by ClickHouse.",
    )

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        if value and not value.replace("_", "").replace("-", "").isalnum():
            msg = f"LORALOOP_WAREHOUSE__CLUSTER={value!r}: letters, digits, '_' and '-' only"
            raise ValueError(msg)
        return value


class Settings(BaseSettings):
    """Top-level settings: data directory, Kafka, ClickHouse, and each component's own."""

    model_config = _config("LORALOOP_")

    data_dir: Path = Field(
        Path(".loraloop"),
        description="Holds the embedded warehouse, the model registry and stack.json.",
    )
    kafka_bootstrap: str = Field(
        "",
        description="host:port[,host:port]; empty starts the embedded Tansu broker.",
    )
    clickhouse_dsn: str = Field(
        "",
        description="ClickHouse DSN; empty means chdb:///<data_dir>/warehouse (in process).",
    )
    log_level: str = Field("WARNING", description="Python logging level.")
    stream: StreamSettings = Field(default_factory=StreamSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            msg = f"LORALOOP_LOG_LEVEL={value!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            raise ValueError(msg)
        return upper

    @property
    def effective_clickhouse_dsn(self) -> str:
        """The DSN in force: the configured one or the embedded chdb store."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'warehouse').resolve()}"

    @property
    def embedded_warehouse(self) -> bool:
        """True when the warehouse is the in-process chdb engine (one owner process)."""
        return self.effective_clickhouse_dsn.startswith("chdb:")

    @property
    def stack_file(self) -> Path:
        """Where ``loraloop up`` advertises its broker and web addresses."""
        return self.data_dir / "stack.json"

    def with_data_dir(self, data_dir: Path | None) -> Settings:
        """A copy pointing at another data directory (CLI ``--data-dir``)."""
        if data_dir is None:
            return self
        return self.model_copy(update={"data_dir": data_dir})
