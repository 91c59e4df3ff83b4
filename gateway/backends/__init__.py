"""Backends that generate the replies: ``local`` (transformers + peft) and ``openai``."""

from gateway.backends.base import BASE_VERSION, ChatBackend
from gateway.backends.local import LocalBackend
from gateway.backends.upstream import UpstreamBackend

__all__ = ["BASE_VERSION", "ChatBackend", "LocalBackend", "UpstreamBackend"]
