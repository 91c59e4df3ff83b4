"""The exception root every loraloop error derives from.

Each layer adds its own module (``streams/exceptions.py``,
``analytics/exceptions.py``, ...) whose classes say what went wrong and what to
do about it.
"""


class LoraloopError(Exception):
    """Root of every error loraloop raises on purpose."""


class ConfigError(LoraloopError):
    """A setting is missing or unsafe; the message names the variable to set."""


class ContractError(LoraloopError):
    """An event does not satisfy its contract; the message names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StackNotRunningError(LoraloopError):
    """A command needs a running ``loraloop up`` stack and found none."""
