"""The gateway's errors, each with its HTTP status and OpenAI-style error body.

The body is what OpenAI's API returns, ``{"error": {"message", "type", "param", "code"}}``,
so the official clients raise their matching exception (``BadRequestError``,
``AuthenticationError``, ``NotFoundError``, ``RateLimitError``, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar

from loraloop.exceptions import LoraloopError

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "GatewayError",
    "NotFoundError",
    "PublishUnavailableError",
    "RateLimitError",
    "RequestTooLargeError",
    "UpstreamError",
]


class GatewayError(LoraloopError):
    """A request the gateway refuses or cannot serve; the message says what to change."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code if code is not None else self.default_code

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        return {
            "error": {
                "message": str(self),
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers (none by default)."""
        return {}


class BadRequestError(GatewayError):
    """400: the request does not parse or breaks a rule; ``param`` names the field."""

    status = 400
    kind = "invalid_request_error"


class AuthenticationError(GatewayError):
    """401: no or wrong API key."""

    status = 401
    kind = "invalid_request_error"
    default_code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFoundError(GatewayError):
    """404: no such model or path."""

    status = 404
    kind = "invalid_request_error"
    default_code = "not_found"


class RequestTooLargeError(GatewayError):
    """413: the body is over ``max_request_bytes``."""

    status = 413
    kind = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(GatewayError):
    """429: the end user is over the rate; ``retry_after_s`` says when to try again."""

    status = 429
    kind = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after_s + 0.5)))}


class UpstreamError(GatewayError):
    """502: the serving engine (or the router) failed; the message carries its reason."""

    status = 502
    kind = "upstream_error"
    default_code = "upstream_error"


class PublishUnavailableError(GatewayError):
    """503: an event could not be published to Kafka; the caller should retry."""

    status = 503
    kind = "server_error"
    default_code = "publish_failed"
