"""Who is calling: signed session cookies for pages, Bearer API keys for ``/api/``.

A session cookie is ``payload.signature`` (HMAC-SHA256 with the session secret);
the payload names the user, the key it logged in with (rotating the key ends the
session), the user's revision at login and the expiry. The user is re-read on
every request, and a session is valid only while the user row is at the revision
it was issued for: logging out writes a new revision (the revocation epoch), so
every session of that user ends at once, and so does any change an admin makes
to the user (disable, roles, key). Every HTML form carries a CSRF token bound to
the session (an HMAC of the cookie), so it ends with the session; the login
form, before any session exists, uses a double-submit cookie whose token is
minted and signed by the server on each visit, so a planted one is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Final

from fastapi import Request

from analytics.console.context import ConsoleContext
from analytics.console.exceptions import CsrfError, NotAuthenticated, PermissionDenied
from analytics.console.users import User
from loraloop.lifecycle import Role

LOGIN_CSRF_COOKIE: Final = "loraloop_login_csrf"
CSRF_FIELD: Final = "csrf_token"
NONCE_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller and, for a browser session, its CSRF token."""

    user: User
    csrf_token: str = ""

    def require(self, *roles: Role) -> None:
        """Raise :class:`PermissionDenied` unless the user holds one of ``roles``."""
        if not self.user.has(*roles):
            needed = " or ".join(r.value for r in roles)
            msg = (
                f"{self.user.username} has roles {[r.value for r in self.user.roles]}; "
                f"this needs {needed}"
            )
            raise PermissionDenied(msg)


def _sign(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of two strings of any characters.

    ``hmac.compare_digest`` raises TypeError on non-ASCII ``str``; comparing the
    UTF-8 bytes keeps a forged non-ASCII token or signature a plain mismatch.
    """
    return hmac.compare_digest(expected.encode(), given.encode(errors="replace"))


def make_session(ctx: ConsoleContext, user: User) -> str:
    """A signed cookie value for ``user``."""
    body = {
        "u": user.username,
        "k": user.key_lookup,
        "r": user.revision,
        "exp": int(time.time()) + ctx.settings.session_ttl_s,
        "n": secrets.token_hex(NONCE_BYTES),
    }
    payload = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    return f"{payload}.{_sign(ctx.session_secret, payload)}"


@dataclass(frozen=True, slots=True)
class SessionClaim:
    """What a valid session cookie says."""

    username: str
    key_lookup: str
    revision: int


def read_session(ctx: ConsoleContext, cookie: str) -> SessionClaim | None:
    """The claim of a valid, unexpired cookie; None otherwise."""
    payload, _, signature = cookie.partition(".")
    if not _same(_sign(ctx.session_secret, payload), signature):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload.encode()))
        if not isinstance(body, dict) or int(body.get("exp", 0)) < time.time():
            return None
        return SessionClaim(str(body["u"]), str(body["k"]), int(body["r"]))
    except (ValueError, TypeError, KeyError):
        return None


def csrf_for(ctx: ConsoleContext, cookie: str) -> str:
    return _sign(ctx.session_secret, "csrf|" + cookie)


def session_principal(ctx: ConsoleContext, request: Request) -> Principal:
    """The logged-in user of a page request (sync: call through ``warehouse.run``)."""
    cookie = request.cookies.get(ctx.settings.cookie_name, "")
    found = read_session(ctx, cookie) if cookie else None
    if found is None:
        msg = "not logged in"
        raise NotAuthenticated(msg)
    user = ctx.users.get(found.username)
    if (
        user is None
        or user.disabled
        or user.key_lookup != found.key_lookup
        or user.revision != found.revision
    ):
        msg = "the session ended (logged out, user changed or disabled, key rotated): log in again"
        raise NotAuthenticated(msg)
    return Principal(user=user, csrf_token=csrf_for(ctx, cookie))


def key_principal(ctx: ConsoleContext, authorization: str) -> Principal:
    """The user of an API key (``Authorization: Bearer <key>``)."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        msg = "send Authorization: Bearer <api key>"
        raise NotAuthenticated(msg)
    user = ctx.users.by_key(key.strip())
    if user is None:
        msg = "unknown, rotated or disabled API key"
        raise NotAuthenticated(msg)
    return Principal(user=user)


def check_csrf(expected: str, submitted: object) -> None:
    """Refuse a form whose token is missing or not the expected one."""
    if not expected or not isinstance(submitted, str) or not _same(expected, submitted):
        msg = "the form's CSRF token is missing or stale: reload the page and submit again"
        raise CsrfError(msg)


def new_login_csrf(ctx: ConsoleContext) -> str:
    """A fresh, server-signed double-submit token for the login form."""
    nonce = secrets.token_urlsafe(NONCE_BYTES)
    return f"{nonce}.{_sign(ctx.session_secret, 'login|' + nonce)}"


def login_csrf(ctx: ConsoleContext, request: Request) -> str:
    """The login form's token: the one in its cookie when the server signed it, else a new one."""
    planted = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return planted if valid_login_csrf(ctx, planted) else new_login_csrf(ctx)


def valid_login_csrf(ctx: ConsoleContext, token: str) -> bool:
    """True when ``token`` is one :func:`new_login_csrf` made (with this secret)."""
    nonce, _, signature = token.partition(".")
    return bool(nonce) and _same(_sign(ctx.session_secret, "login|" + nonce), signature)


def check_login_csrf(ctx: ConsoleContext, request: Request, submitted: object) -> None:
    """Refuse a login whose cookie token is not server-signed or not the one submitted."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    check_csrf(cookie if valid_login_csrf(ctx, cookie) else "", submitted)
