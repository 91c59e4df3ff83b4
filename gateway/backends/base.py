"""What a backend does: one reply, whole or as a stream of text pieces, by a version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from gateway.schemas import ChatRequest, Reply, Usage
from trainer.router import BASE_VERSION

__all__ = ["BASE_VERSION", "AdapterHost", "ChatBackend"]


class ChatBackend(Protocol):
    """Generates replies with the LoRA adapter the router chose (``base``: none).

    A stream yields text pieces and, last, the :class:`Usage` when the backend knows it.
    Failures are :class:`gateway.errors.GatewayError` (502 with the reason); a stream
    raises before its first piece when the request cannot be served at all.
    """

    async def complete(self, request: ChatRequest, adapter: str) -> Reply: ...

    def stream(self, request: ChatRequest, adapter: str) -> AsyncIterator[str | Usage]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class AdapterHost(Protocol):
    """A backend that loads and unloads LoRA adapters at runtime (vLLM's endpoints).

    The gateway serves ``POST /v1/load_lora_adapter``, ``POST /v1/unload_lora_adapter``
    and lists :attr:`loaded` in ``GET /v1/models`` for such a backend, so the rollout
    service's adapter controller (:mod:`trainer.adapter_fleet`) drives it like vLLM.
    """

    max_lora_rank: int | None

    @property
    def loaded(self) -> list[str]: ...

    async def load_adapter(self, name: str, path: Path) -> None: ...

    async def unload_adapter(self, name: str) -> None: ...
