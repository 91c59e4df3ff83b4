"""The ``openai`` backend: any OpenAI-compatible server (vLLM, SGLang, TGI), several replicas.

The adapter is chosen by the request's ``model`` (vLLM multi-LoRA serves ``model_vN``
under its name; the base model under ``upstream_base_model``). Replicas are tried
round robin; one that cannot be connected to passes the request to the next. Any
other failure (a timeout, an error status, a broken stream) is a 502 with the
upstream's reason.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import httpx

from gateway.backends.base import BASE_VERSION
from gateway.errors import UpstreamError
from gateway.schemas import ChatRequest, Reply

logger = logging.getLogger(__name__)

CHAT_PATH: Final = "/chat/completions"
LOCAL_FIELDS: Final = frozenset({"metadata", "safety_identifier"})
"""Request fields the gateway consumes and does not send upstream."""
ERROR_STATUS: Final = 400
REASON_CHARS: Final = 500
"""How much of an upstream's error body a 502 quotes at most."""


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    text = str(message or response.text)[:REASON_CHARS]
    return f"status {response.status_code}: {text}"


class UpstreamBackend:
    """Chat completions from OpenAI-compatible ``urls`` (each ending in ``/v1``)."""

    def __init__(
        self,
        *,
        urls: Sequence[str],
        api_key: str | None,
        base_model: str,
        timeout: httpx.Timeout,
        limits: httpx.Limits,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not urls:
            msg = (
                "the openai backend needs at least one upstream: set LORALOOP_GATEWAY__UPSTREAMS"
                "='[\"http://host:8000/v1\"]'"
            )
            raise UpstreamError(msg)
        self._urls = [u.rstrip("/") for u in urls]
        self._turn = itertools.count()
        self._base_model = base_model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            timeout=timeout, limits=limits, headers=headers, transport=transport
        )

    def _payload(self, request: ChatRequest, adapter: str, *, stream: bool) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True, exclude=set(LOCAL_FIELDS))
        body["model"] = self._base_model if adapter == BASE_VERSION else adapter
        body["stream"] = stream
        return body

    async def _send(self, payload: dict[str, Any], *, stream: bool) -> httpx.Response:
        """The first replica's response that connects (round robin), status checked."""
        start = next(self._turn)
        refused = []
        for step in range(len(self._urls)):
            url = self._urls[(start + step) % len(self._urls)]
            request = self._client.build_request("POST", url + CHAT_PATH, json=payload)
            try:
                response = await self._client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                logger.warning("upstream %s cannot be reached: %s", url, e)
                refused.append(f"{url}: {type(e).__name__} {e}".strip())
                continue
            except httpx.HTTPError as e:
                msg = f"upstream {url} failed: {type(e).__name__} {e}".strip()
                raise UpstreamError(msg) from e
            if response.status_code >= ERROR_STATUS:
                await response.aread()
                await response.aclose()
                msg = f"upstream {url} refused {payload['model']!r}: {_reason(response)}"
                raise UpstreamError(msg)
            return response
        msg = "no upstream could be reached: " + "; ".join(refused)
        raise UpstreamError(msg)

    async def complete(self, request: ChatRequest, adapter: str) -> Reply:
        response = await self._send(self._payload(request, adapter, stream=False), stream=False)
        try:
            body = response.json()
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return Reply(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            msg = f"upstream {response.url} answered a body that is no chat completion: {e!r}"
            raise UpstreamError(msg) from e

    async def stream(self, request: ChatRequest, adapter: str) -> AsyncIterator[str]:
        response = await self._send(self._payload(request, adapter, stream=True), stream=True)
        try:
            async for line in response.aiter_lines():
                data = line.removeprefix("data:").strip() if line.startswith("data:") else ""
                if not data:
                    continue
                if data == "[DONE]":
                    break
                for piece in _pieces(data, str(response.url)):
                    yield piece
        except httpx.HTTPError as e:
            msg = f"upstream {response.url} broke off the stream: {type(e).__name__} {e}"
            raise UpstreamError(msg) from e
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


def _pieces(data: str, url: str) -> list[str]:
    """The text deltas of one stream chunk; an error chunk raises."""
    try:
        chunk = json.loads(data)
    except ValueError as e:
        msg = f"upstream {url} sent a stream chunk that is not JSON: {data[:REASON_CHARS]!r}"
        raise UpstreamError(msg) from e
    if "error" in chunk:
        msg = f"upstream {url} failed mid-stream: {str(chunk['error'])[:REASON_CHARS]}"
        raise UpstreamError(msg)
    return [
        content
        for choice in chunk.get("choices") or []
        if (content := (choice.get("delta") or {}).get("content"))
    ]
