"""Console users and their API keys (``console_users``, latest revision wins).

A key is shown once, when it is made; the table keeps a salted scrypt hash of it
(``scrypt$n$r$p$salt$hash``) and ``key_lookup``, a short SHA-256 prefix that finds
the row to verify without scanning. Roles are the lifecycle's; ``system`` (a
program) is never combined with a human role, and ``pii`` lets a user see
unmasked text.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict

from analytics.console.config import ConsoleSettings
from analytics.console.exceptions import LastAdminError, UserError
from analytics.pool_log import CAPTURE_ACTOR, utc
from analytics.warehouse import Warehouse
from loraloop.events import MAX_ID_CHARS
from loraloop.lifecycle import Role

logger = logging.getLogger(__name__)

USER_COLUMNS: Final = (
    "username", "roles", "pii", "disabled", "key_lookup", "key_hash", "created_by",
    "created_at", "updated_at", "revision",
)  # fmt: skip
KEY_PREFIX: Final = "llk_"
LOOKUP_CHARS: Final = 16
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
HUMAN_ROLES: Final = frozenset({Role.LABELLER, Role.APPROVER, Role.ADMIN})
SAMPLE_ROLES: Final = frozenset({Role.LABELLER, Role.APPROVER, Role.SYSTEM})
"""Roles that may read the pool (admin alone may not: separation of duties)."""
MAX_USERNAME_CHARS: Final = MAX_ID_CHARS
"""A username is an audit actor: the same limit as the actor column."""
USERNAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
"""Normalised usernames: ASCII letters, digits, and ``.``, ``_``, ``-`` inside (no ``/``)."""
SYSTEM_ACTORS: Final = frozenset({CAPTURE_ACTOR, "trainer", "system", "bootstrap", "check"})
"""Names the programs write into the audit log; a human may not take them."""
CONFUSABLE: Final = (("rn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("i", "l"), ("5", "s"))
"""ASCII look-alikes folded together when names are compared (``adrnin`` ~ ``admin``)."""
SEPARATORS: Final = str.maketrans("", "", "._-")


def fold_username(name: str) -> str:
    """NFKC, casefold and trim: the form a username is stored and compared in."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def skeleton(name: str) -> str:
    """What ``name`` looks like: separators dropped, ASCII look-alikes folded together."""
    folded = fold_username(name).translate(SEPARATORS)
    for look, like in CONFUSABLE:
        folded = folded.replace(look, like)
    return folded


def normalise_username(name: str) -> str:
    """The stored form of a new username; refuses what could pass for another name.

    After NFKC and casefolding a name must be ASCII letters, digits and inner
    ``.``/``_``/``-`` (so no look-alike script letters, zero-width or control
    characters, bidi overrides, whitespace or ``/``), at most MAX_USERNAME_CHARS.
    """
    folded = fold_username(name)
    if not folded:
        msg = "a username is required"
        raise UserError(msg)
    if len(folded) > MAX_USERNAME_CHARS or USERNAME_RE.fullmatch(folded) is None:
        msg = (
            f"username {name!r} is refused: use ASCII letters, digits and '.', '_' or '-' "
            f"inside, at most {MAX_USERNAME_CHARS} characters"
        )
        raise UserError(msg)
    return folded


class User(BaseModel):
    """One console user as stored (without the key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    roles: tuple[Role, ...]
    pii: bool
    disabled: bool
    key_lookup: str
    key_hash: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    revision: int

    def has(self, *roles: Role) -> bool:
        """True when the user holds any of ``roles``."""
        return any(r in self.roles for r in roles)

    @property
    def public(self) -> dict[str, object]:
        """What the API and the admin page show (no hash)."""
        return {
            "username": self.username,
            "roles": [r.value for r in self.roles],
            "pii": self.pii,
            "disabled": self.disabled,
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
        }


def new_key(settings: ConsoleSettings) -> str:
    return KEY_PREFIX + secrets.token_urlsafe(settings.key_bytes)


def key_lookup(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:LOOKUP_CHARS]


def hash_key(key: str, settings: ConsoleSettings) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    n, r, p = settings.scrypt_n, settings.scrypt_r, settings.scrypt_p
    digest = hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_key(key: str, stored: str) -> bool:
    """Constant-time check of ``key`` against a stored ``scrypt$...`` hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            key.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=HASH_BYTES
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def parse_roles(values: Iterable[str]) -> tuple[Role, ...]:
    """Known roles, deduplicated; refuses ``system`` next to a human role."""
    roles: list[Role] = []
    for value in values:
        try:
            role = Role(value.strip())
        except ValueError as e:
            msg = f"unknown role {value!r}; use {', '.join(r.value for r in Role)}"
            raise UserError(msg) from e
        if role not in roles:
            roles.append(role)
    if Role.SYSTEM in roles and HUMAN_ROLES.intersection(roles):
        msg = "role system is for programs only: it cannot be combined with a human role"
        raise UserError(msg)
    if not roles:
        msg = "a user needs at least one role"
        raise UserError(msg)
    return tuple(roles)


class UserStore:
    """Reads and writes ``console_users``; verified keys are cached per process."""

    def __init__(self, warehouse: Warehouse, settings: ConsoleSettings) -> None:
        self._warehouse = warehouse
        self._settings = settings
        self._verified: dict[tuple[str, str], bool] = {}

    def _select(self, where: str, params: dict[str, str]) -> list[User]:
        rows = self._warehouse.query(
            # `where` is one of the constant clauses below; values are parameters.
            "SELECT " + ", ".join(USER_COLUMNS) + " FROM console_users FINAL " + where,  # noqa: S608
            params,
        ).result_rows
        return [_user(row) for row in rows]

    def get(self, username: str) -> User | None:
        found = self._select("WHERE username = {u:String}", {"u": username})
        return found[0] if found else None

    def all(self) -> list[User]:
        return self._select("ORDER BY username", {})

    def by_key(self, key: str) -> User | None:
        """The enabled user whose key this is, or None."""
        for user in self._select("WHERE key_lookup = {k:String}", {"k": key_lookup(key)}):
            cache_key = (user.key_hash, hashlib.sha256(key.encode()).hexdigest())
            if cache_key not in self._verified:
                self._verified[cache_key] = verify_key(key, user.key_hash)
            if self._verified[cache_key] and not user.disabled:
                return user
        return None

    def create(
        self, username: str, roles: Iterable[str], *, pii: bool, actor: str
    ) -> tuple[User, str]:
        """A new user and their key (shown once).

        Refuses an existing name, one that looks like an existing name, and, for a
        human, the names of the system actors.
        """
        name = normalise_username(username)
        parsed = parse_roles(roles)
        if self.get(name) is not None:
            msg = f"user {name!r} exists: update it or rotate its key instead"
            raise UserError(msg)
        if HUMAN_ROLES.intersection(parsed) and skeleton(name) in {
            skeleton(a) for a in SYSTEM_ACTORS
        }:
            msg = f"{name!r} is (or looks like) a system actor's name: choose another for a person"
            raise UserError(msg)
        for other in self.all():
            if skeleton(other.username) == skeleton(name):
                msg = f"{name!r} looks like the existing user {other.username!r}: choose another"
                raise UserError(msg)
        key = new_key(self._settings)
        now = datetime.now(UTC)
        user = User(
            username=name, roles=parsed, pii=pii, disabled=False,
            key_lookup=key_lookup(key), key_hash=hash_key(key, self._settings),
            created_by=actor, created_at=now, updated_at=now, revision=1,
        )  # fmt: skip
        self._write(user)
        return user, key

    def update(
        self,
        username: str,
        *,
        roles: Iterable[str] | None = None,
        pii: bool | None = None,
        disabled: bool | None = None,
        rotate_key: bool = False,
        key: str | None = None,
    ) -> tuple[User, str | None]:
        """A new revision of ``username``; returns the new key when one was made."""
        user = self.get(username)
        if user is None:
            msg = f"no user {username!r}"
            raise UserError(msg)
        changes: dict[str, object] = {
            "updated_at": datetime.now(UTC),
            "revision": user.revision + 1,
        }
        if roles is not None:
            changes["roles"] = parse_roles(roles)
        if pii is not None:
            changes["pii"] = pii
        if disabled is not None:
            changes["disabled"] = disabled
        if rotate_key and key is None:
            key = new_key(self._settings)
        if key is not None:
            changes.update(key_lookup=key_lookup(key), key_hash=hash_key(key, self._settings))
        updated = user.model_copy(update=changes)
        self._keep_an_admin(user, updated)
        self._write(updated)
        return updated, key

    def end_sessions(self, username: str) -> None:
        """Bump the user's revision (the revocation epoch): every session of theirs ends."""
        user = self.get(username)
        if user is not None:
            changes = {"updated_at": datetime.now(UTC), "revision": user.revision + 1}
            self._write(user.model_copy(update=changes))

    def _keep_an_admin(self, before: User, after: User) -> None:
        """Refuse a change that disables or demotes the last enabled admin."""
        if not _enabled_admin(before) or _enabled_admin(after):
            return
        others = [u for u in self.all() if u.username != before.username and _enabled_admin(u)]
        if not others:
            msg = (
                f"{before.username!r} is the last enabled admin: make another user admin "
                "first (or, on the machine, run `loraloop admin recover`)"
            )
            raise LastAdminError(msg)

    def recover_admin(self, username: str, key: str) -> User:
        """Re-enable ``username`` as an admin with ``key`` (the operator's way back in).

        Creates the user when it does not exist; keeps its other roles and PII flag.
        """
        name = normalise_username(username)
        user = self.get(name)
        now = datetime.now(UTC)
        if user is None:
            user = User(
                username=name, roles=(Role.ADMIN,), pii=False, disabled=False,
                key_lookup=key_lookup(key), key_hash=hash_key(key, self._settings),
                created_by="recover", created_at=now, updated_at=now, revision=1,
            )  # fmt: skip
        else:
            roles = user.roles if Role.ADMIN in user.roles else (*user.roles, Role.ADMIN)
            if Role.SYSTEM in roles:
                roles = (Role.ADMIN,)
            user = user.model_copy(
                update={
                    "roles": roles, "disabled": False, "key_lookup": key_lookup(key),
                    "key_hash": hash_key(key, self._settings), "updated_at": now,
                    "revision": user.revision + 1,
                }
            )  # fmt: skip
        self._write(user)
        logger.warning("recovered admin %r (enabled, admin role, new key)", name)
        return user

    def ensure_admin(self, key: str) -> User:
        """The bootstrap admin exists and ``key`` is its key (re-keyed when it changed).

        When no enabled admin is left (a lock-out), the bootstrap admin is re-enabled
        with the admin role, so a restart recovers.
        """
        name = self._settings.admin_user
        user = self.get(name)
        if user is None:
            now = datetime.now(UTC)
            user = User(
                username=name, roles=(Role.ADMIN,), pii=False, disabled=False,
                key_lookup=key_lookup(key), key_hash=hash_key(key, self._settings),
                created_by="bootstrap", created_at=now, updated_at=now, revision=1,
            )  # fmt: skip
            self._write(user)
            logger.info("created the bootstrap admin %r", name)
        elif not any(_enabled_admin(u) for u in self.all()):
            user = self.recover_admin(name, key)
            logger.warning("no enabled admin was left: restored the bootstrap admin %r", name)
        elif not verify_key(key, user.key_hash):
            user, _ = self.update(name, key=key)
            logger.info("re-keyed the bootstrap admin %r from the configured key", name)
        return user

    def _write(self, user: User) -> None:
        row = [getattr(user, c) for c in USER_COLUMNS]
        row[1] = [r.value for r in user.roles]
        self._warehouse.insert("console_users", [row], column_names=USER_COLUMNS)


def _enabled_admin(user: User) -> bool:
    return Role.ADMIN in user.roles and not user.disabled


def _user(row: object) -> User:
    data = dict(zip(USER_COLUMNS, row, strict=True))  # type: ignore[call-overload]
    data["created_at"] = utc(data["created_at"])
    data["updated_at"] = utc(data["updated_at"])
    data["roles"] = tuple(data["roles"])
    return User(**data)


def write_key_file(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` (mode 0600), replacing what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    tmp.replace(path)


def bootstrap_key(settings: ConsoleSettings) -> str:
    """The configured admin key, or the one in ``<data_dir>/admin.key`` (made if missing)."""
    if settings.admin_key is not None and settings.admin_key.get_secret_value():
        return settings.admin_key.get_secret_value()
    path = settings.admin_key_file
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    logger.warning("generated the console admin key into %s (mode 0600)", path)
    return key
