"""``loraloop worker`` / ``topics`` refuse the embedded-only settings, with the fix."""

from __future__ import annotations

import pytest

from loraloop.cli.worker import check_server_mode, topics
from loraloop.exceptions import ConfigError, LoraloopError
from loraloop.settings import Settings


def _settings(*, kafka_bootstrap: str = "kafka:9092", dsn: str = "http://ch:8123") -> Settings:
    return Settings(kafka_bootstrap=kafka_bootstrap, clickhouse_dsn=dsn)


def test_server_settings_pass() -> None:
    check_server_mode(_settings())


def test_a_worker_needs_an_external_kafka() -> None:
    settings = _settings(kafka_bootstrap="")
    with pytest.raises(ConfigError, match="LORALOOP_KAFKA_BOOTSTRAP=host:port"):
        check_server_mode(settings)


@pytest.mark.parametrize("dsn", ["", "chdb:///tmp/warehouse"])
def test_a_worker_refuses_the_single_process_chdb_engine(dsn: str) -> None:
    settings = _settings(dsn=dsn)
    with pytest.raises(ConfigError, match="chdb engine serves one process") as error:
        check_server_mode(settings)
    assert isinstance(error.value, LoraloopError)
    assert "LORALOOP_CLICKHOUSE_DSN=http://host:8123" in str(error.value)


def test_topics_needs_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORALOOP_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(ConfigError, match="--bootstrap"):
        topics(data_dir=None, bootstrap=None)
