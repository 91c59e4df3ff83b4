"""Configuration: one pydantic-settings class per component, env prefix ``LORALOOP_``.

Every default is documented on its field; ``loraloop config`` prints the
effective values. Nested fields use ``__`` (``LORALOOP_STREAM__BATCH_SIZE``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
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
    batch_size: int = Field(500, ge=1, description="Events per ClickHouse insert at most.")
    batch_within_s: float = Field(
        0.5, gt=0, description="Flush a partial batch after this many seconds."
    )
    retry_initial_s: float = Field(0.2, gt=0, description="First sink retry back-off.")
    retry_max_s: float = Field(10.0, gt=0, description="Largest sink retry back-off.")
    session_timeout_s: float = Field(
        6.0,
        gt=0,
        description="Consumer session timeout. Tansu makes a group join wait half of it.",
    )
    heartbeat_interval_s: float = Field(1.0, gt=0, description="Consumer heartbeat interval.")
    web_port: int = Field(
        0, ge=0, le=65535, description="Worker HTTP port (health, metrics); 0 picks a free one."
    )
    web_host: str = Field("127.0.0.1", description="Worker HTTP bind address.")
    conversation_idle_s: float = Field(
        172_800.0,
        gt=0,
        description="Detector state of a conversation idle this long (stream time) is dropped.",
    )
    expiry_interval_s: float = Field(
        60.0, gt=0, description="How often the worker looks for idle conversations."
    )
    lag_interval_s: float = Field(
        5.0, gt=0, description="How often consumer lag is measured for /metrics and /health."
    )
    tier_cache_size: int = Field(
        100_000, ge=1, description="User tiers cached by the worker for downvote detection."
    )
    replay_timeout_s: float = Field(
        600.0, gt=0, description="`loraloop replay` gives up when not done after this long."
    )


class WarehouseSettings(BaseSettings):
    """ClickHouse: where it is and how raw text is retained."""

    model_config = _config("LORALOOP_WAREHOUSE__")

    text_ttl_days: int = Field(
        365, ge=1, description="Raw conversation text is dropped after this many days."
    )
    database: str = Field("loraloop", description="ClickHouse database holding every table.")


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
