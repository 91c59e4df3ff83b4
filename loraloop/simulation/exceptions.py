"""Errors of the demo's simulation and its driver."""

from loraloop.exceptions import LoraloopError


class DemoError(LoraloopError):
    """The demo could not go on; the message says which stage failed and what to check."""


class StreamTimeoutError(DemoError):
    """The stack did not write what was published in time (is the worker consuming?)."""
