"""The service key: the bearer key of loraloop's machine-to-machine endpoints.

Why: the worker's ``/api/counts`` and Faust pages, and ``GET /v1/route`` (which writes
an ``assignments`` row per served user, rows the canary comparison counts) must not
answer anyone who can reach the port. Humans use console API keys; services (the chat
gateway, ``loraloop status``, scripts) send ``Authorization: Bearer <service key>``.

The key is ``LORALOOP_STREAM__SERVICE_KEY`` when set, else ``<data_dir>/service.key``
(generated once, mode 0600, by the process that serves; clients on the same machine read
it). Only the composition root resolves it; libraries get the string.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Final

from loraloop.exceptions import ConfigError
from loraloop.settings import Settings

logger = logging.getLogger(__name__)

KEY_FILE: Final = "service.key"
KEY_BYTES: Final = 32
"""Random bytes in a generated service key."""
KEY_MODE: Final = 0o600
"""A key file is the owner's alone."""
BEARER: Final = "bearer"


def service_key_file(settings: Settings) -> Path:
    """Where a generated service key lives."""
    return settings.data_dir / KEY_FILE


def service_key(settings: Settings, *, create: bool = True) -> str:
    """The configured service key, or the one in ``<data_dir>/service.key``.

    With ``create`` (the serving process), a missing file is generated (mode 0600);
    without it (a client), a missing key is a :class:`ConfigError` saying what to set.
    """
    configured = settings.stream.service_key
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value()
    hint = (
        "set LORALOOP_STREAM__SERVICE_KEY to the key the stack was started with, or pass "
        "the --data-dir it runs on"
    )
    return key_from_file(service_key_file(settings), what="service key", hint=hint, create=create)


def key_from_file(
    path: Path, *, what: str, hint: str, create: bool = True, prefix: str = ""
) -> str:
    """The key in ``path``; a missing one is generated (0600) with ``create``, else refused.

    Generation is exclusive (``O_EXCL``): two processes starting together share one key.
    """
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    if not create:
        msg = f"no {what}: {path} does not exist; {hint}"
        raise ConfigError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = prefix + secrets.token_urlsafe(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:  # another process made it meanwhile: use theirs
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    logger.warning("generated the %s into %s (mode 0600)", what, path)
    return key


def bearer_header(key: str) -> dict[str, str]:
    """The request header that carries ``key``."""
    return {"Authorization": f"Bearer {key}"}


def key_matches(authorization: str | None, key: str) -> bool:
    """True when an ``Authorization`` header carries ``key`` (constant time, any text)."""
    if not authorization or not key:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != BEARER:
        return False
    # bytes: compare_digest raises on non-ASCII str, and a header may hold anything (a
    # server may hand over undecodable bytes as surrogates, which strict UTF-8 refuses).
    return hmac.compare_digest(given.strip().encode(errors="replace"), key.encode())
