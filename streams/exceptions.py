"""Errors of the stream layer: the embedded broker, publishing, the worker."""

from loraloop.exceptions import LoraloopError


class BrokerError(LoraloopError):
    """The embedded broker could not be started or stopped."""


class PublishError(LoraloopError):
    """Events could not be published to Kafka."""


class ReplayTimeoutError(LoraloopError):
    """A replay did not see every event written in time."""
