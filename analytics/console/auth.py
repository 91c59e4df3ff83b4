"""Who is calling: signed session cookies for pages, Bearer API keys for ``/api/``.

A session cookie is ``payload.signature`` (HMAC-SHA256 with the session secret);
the payload names the user, the key it logged in with (rotating the key ends the
session) and the expiry. The user is re-read on every request, so disabling a
user or changing roles takes effect at once. Every HTML form carries a CSRF
token bound to the session (an HMAC of the cookie); the login form, before any
session exists, uses a double-submit cookie instead.
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
        "exp": int(time.time()) + ctx.settings.session_ttl_s,
        "n": secrets.token_hex(NONCE_BYTES),
    }
    payload = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    return f"{payload}.{_sign(ctx.session_secret, payload)}"


def read_session(ctx: ConsoleContext, cookie: str) -> tuple[str, str] | None:
    """(username, key_lookup) of a valid, unexpired cookie; None otherwise."""
    payload, _, signature = cookie.partition(".")
    if not _same(_sign(ctx.session_secret, payload), signature):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload.encode()))
        if not isinstance(body, dict) or int(body.get("exp", 0)) < time.time():
            return None
        return str(body["u"]), str(body["k"])
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
    user = ctx.users.get(found[0])
    if user is None or user.disabled or user.key_lookup != found[1]:
        msg = "the session ended (user disabled or key rotated): log in again"
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


def login_csrf(request: Request) -> str:
    """The double-submit token of the login form (reused from its cookie when present)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(NONCE_BYTES)
