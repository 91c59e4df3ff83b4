"""Errors of the analytics layer: the warehouse and its migrations."""

from loraloop.exceptions import LoraloopError


class WarehouseError(LoraloopError):
    """ClickHouse could not be reached or refused a statement."""


class WarehouseRefusedError(WarehouseError):
    """ClickHouse refused the data itself (it would refuse it again): not worth a retry."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class WarehouseLockedError(WarehouseError):
    """The embedded chdb store is owned by another process (usually ``loraloop up``)."""


class MigrationError(WarehouseError):
    """A migration failed or an applied migration was edited afterwards."""
