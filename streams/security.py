"""Kafka client security from :class:`loraloop.settings.KafkaSettings`.

One settings class configures every Kafka client loraloop opens: the Faust worker
(``broker_credentials``), the aiokafka producer and the admin client (keyword
arguments). PLAINTEXT, the default, adds nothing, so the embedded broker is
unaffected.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from loraloop.settings import KafkaSettings
from streams.exceptions import BrokerError


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (``None`` without TLS)."""
    if not kafka.uses_tls:
        return None
    password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=kafka.ssl_cafile,
            certfile=kafka.ssl_certfile,
            keyfile=kafka.ssl_keyfile,
            password=password,
        )
    except (OSError, ssl.SSLError) as e:
        msg = f"cannot build the Kafka TLS context ({e}); check LORALOOP_KAFKA__SSL_* files"
        raise BrokerError(msg) from e
    context.check_hostname = kafka.ssl_check_hostname
    return context


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin client."""
    kwargs: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    context = ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL_"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        kwargs |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": password,
        }
    return kwargs


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` (``None`` for PLAINTEXT)."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None
