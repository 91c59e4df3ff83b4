"""The gateway's API key: ``LORALOOP_GATEWAY__API_KEY``, else ``<data_dir>/gateway.key``.

A service-role key as :mod:`loraloop.service_key` makes the stack's: generated once
(mode 0600) by the process that serves, read by clients on the same machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import SecretStr

from loraloop.service_key import key_from_file

KEY_FILE: Final = "gateway.key"


def gateway_key_file(data_dir: Path) -> Path:
    """Where a generated gateway key lives."""
    return data_dir / KEY_FILE


def gateway_key(data_dir: Path, configured: SecretStr | None, *, create: bool = True) -> str:
    """The configured key, else the one in ``<data_dir>/gateway.key`` (made when ``create``)."""
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value()
    hint = (
        "set LORALOOP_GATEWAY__API_KEY or start `loraloop gateway` on this --data-dir once "
        "to generate it"
    )
    return key_from_file(
        gateway_key_file(data_dir), what="gateway key", hint=hint, create=create, prefix="ll-"
    )
