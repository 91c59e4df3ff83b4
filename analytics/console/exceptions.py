"""Errors of the review console; each maps to one HTTP status."""

from __future__ import annotations

from loraloop.exceptions import LoraloopError


class ConsoleError(LoraloopError):
    """Root of the console's errors."""

    status_code = 400


class NotAuthenticated(ConsoleError):
    """No valid session or API key: log in, or send ``Authorization: Bearer <key>``."""

    status_code = 401


class PermissionDenied(ConsoleError):
    """The user is known but lacks the role or permission; ask an admin for it."""

    status_code = 403


class CsrfError(PermissionDenied):
    """A form came without the session's CSRF token: reload the page and submit again."""


class UserError(ConsoleError):
    """A user request is invalid (unknown role, mixed human and system roles, ...)."""

    status_code = 422


class InvalidRequest(ConsoleError):
    """A query parameter or body is malformed (not a number, NaN, nested too deep): fix it."""

    status_code = 422


class BodyTooLarge(ConsoleError):
    """The request body is over the console's limit (``max_body_bytes``): send less."""

    status_code = 413


class LastAdminError(UserError):
    """The change would leave no enabled admin: make another admin first."""

    status_code = 409
