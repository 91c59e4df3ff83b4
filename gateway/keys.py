"""The gateway's API key: ``LORALOOP_GATEWAY__API_KEY``, else ``<data_dir>/gateway.key``.

A service-role key as :mod:`loraloop.service_key` makes the stack's: generated once
(mode 0600) by the process that serves, read by clients on the same machine.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from loraloop.exceptions import ConfigError

logger = logging.getLogger(__name__)

KEY_FILE: Final = "gateway.key"
KEY_BYTES: Final = 32
"""Random bytes in a generated key."""
KEY_MODE: Final = 0o600


def gateway_key_file(data_dir: Path) -> Path:
    """Where a generated gateway key lives."""
    return data_dir / KEY_FILE


def gateway_key(data_dir: Path, configured: SecretStr | None, *, create: bool = True) -> str:
    """The configured key, else the one in ``<data_dir>/gateway.key`` (made when ``create``)."""
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value()
    path = gateway_key_file(data_dir)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    if not create:
        msg = (
            f"no gateway key: {path} does not exist; set LORALOOP_GATEWAY__API_KEY or start "
            "`loraloop gateway` on this --data-dir once to generate it"
        )
        raise ConfigError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "ll-" + secrets.token_urlsafe(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:  # another process made it meanwhile: use theirs
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    logger.warning("generated the gateway API key into %s (mode 0600)", path)
    return key
