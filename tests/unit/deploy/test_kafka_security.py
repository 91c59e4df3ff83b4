"""One settings class configures the security of every Kafka client."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from pydantic import SecretStr, ValidationError

from loraloop.settings import KafkaSettings, Settings
from streams.app import create_app
from streams.producer import EventPublisher
from streams.security import client_kwargs, faust_credentials, ssl_context

PASSWORD = "s3cret"  # noqa: S105 - a test credential, never a real one


def _kafka(**values: Any) -> KafkaSettings:
    return KafkaSettings(**values)


def test_plaintext_adds_nothing() -> None:
    kafka = _kafka()
    assert client_kwargs(kafka) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(kafka) is None
    assert ssl_context(kafka) is None


def test_sasl_ssl_reaches_aiokafka_and_faust() -> None:
    kafka = _kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="loop",
        sasl_password=SecretStr(PASSWORD),
    )
    kwargs = client_kwargs(kafka)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("loop", "s3cret")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.password == PASSWORD


def test_ssl_without_sasl_and_hostname_checking() -> None:
    kafka = _kafka(security_protocol="SSL", ssl_check_hostname=False)
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, SSLCredentials)
    assert credentials.context.check_hostname is False
    assert "sasl_mechanism" not in client_kwargs(kafka)


def test_the_password_is_a_secret_in_the_settings_dump() -> None:
    kafka = _kafka(security_protocol="SASL_SSL", sasl_username="u", sasl_password=PASSWORD)
    assert PASSWORD not in Settings(kafka=kafka).model_dump_json()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "SASL_USERNAME"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_username": "u",
                "sasl_password": PASSWORD,
            },
            "in clear",
        ),
        ({"ssl_cafile": "/ca.pem"}, "need SSL or SASL_SSL"),
        ({"security_protocol": "SSL", "ssl_keyfile": "/k.pem"}, "SSL_CERTFILE"),
    ],
)
def test_unsafe_or_incomplete_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _kafka(**values)


def test_plaintext_sasl_can_be_allowed_explicitly() -> None:
    kafka = _kafka(
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password=PASSWORD,
        allow_plaintext_sasl=True,
    )
    assert "ssl_context" not in client_kwargs(kafka)


def test_environment_variables_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORALOOP_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LORALOOP_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("LORALOOP_KAFKA__SASL_USERNAME", "loop")
    monkeypatch.setenv("LORALOOP_KAFKA__SASL_PASSWORD", "pw")
    kafka = Settings().kafka
    assert kafka.sasl_mechanism == "SCRAM-SHA-256"
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "pw"


def test_the_worker_app_gets_the_credentials_and_the_replication(tmp_path: Any) -> None:
    kafka = _kafka(security_protocol="SASL_SSL", sasl_username="u", sasl_password=PASSWORD)
    settings = Settings(data_dir=tmp_path, kafka_bootstrap="kafka:9092", kafka=kafka)
    settings.stream.replication_factor = 3
    app = create_app(settings, bootstrap="kafka:9092", web_port=6066)
    assert isinstance(app.conf.broker_credentials, SASLCredentials)
    assert app.conf.topic_replication_factor == 3


def test_the_embedded_broker_is_always_plaintext(tmp_path: Any) -> None:
    kafka = _kafka(security_protocol="SSL")
    settings = Settings(data_dir=tmp_path, kafka_bootstrap="", kafka=kafka)
    app = create_app(settings, bootstrap="127.0.0.1:9092", web_port=6066)
    assert app.conf.broker_credentials is None


def test_the_producer_is_built_with_the_security_settings() -> None:
    async def build() -> str:
        kafka = _kafka(security_protocol="SSL")
        publisher = EventPublisher("kafka:9093", Settings().stream, security=kafka)
        try:
            return str(publisher._producer.client._security_protocol)
        finally:
            await publisher._producer.stop()

    assert asyncio.run(build()) == "SSL"
