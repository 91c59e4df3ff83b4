"""The ``openai`` backend: any OpenAI-compatible server (vLLM, SGLang, TGI), several replicas.

The adapter is chosen by the request's ``model`` (vLLM multi-LoRA serves ``model_vN``
under its name; the base model under ``upstream_base_model``). Replicas are tried
round robin; one that cannot be connected to passes the request to the next. Any
other failure (a timeout, an error status, a broken stream) is a 502 with the
upstream's reason.

The client is aiohttp's: at the gateway's rates httpx spends about 5 ms of CPU per
request in its connection pool, aiohttp about 0.3 ms (benchmarks/gateway_overhead.py).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import aiohttp
import orjson

from gateway.backends.base import BASE_VERSION
from gateway.errors import UpstreamError
from gateway.schemas import ChatRequest, Reply, Usage

logger = logging.getLogger(__name__)

CHAT_PATH: Final = "/chat/completions"
LOCAL_FIELDS: Final = frozenset({"metadata", "safety_identifier"})
"""Request fields the gateway consumes and does not send upstream."""
ERROR_STATUS: Final = 400
REASON_CHARS: Final = 500
"""How much of an upstream's error body a 502 quotes at most."""
DATA: Final = b"data:"
DONE: Final = b"[DONE]"


def _reason(status: int, raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    text = str(message or raw.decode(errors="replace"))[:REASON_CHARS]
    return f"status {status}: {text}"


class UpstreamBackend:
    """Chat completions from OpenAI-compatible ``urls`` (each ending in ``/v1``)."""

    def __init__(
        self,
        *,
        urls: Sequence[str],
        api_key: str | None,
        base_model: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int,
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
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._read_timeout_s = read_timeout_s
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The session, made on first use on the serving loop (aiohttp binds to it)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=self._timeout,
                headers=self._headers,
            )
        return self._session

    def _payload(self, request: ChatRequest, adapter: str, *, stream: bool) -> bytes:
        body = request.model_dump(exclude_none=True, exclude=set(LOCAL_FIELDS))
        body["model"] = self._base_model if adapter == BASE_VERSION else adapter
        body["stream"] = stream
        return orjson.dumps(body)

    def _failed(self, url: str, error: BaseException) -> UpstreamError:
        if isinstance(error, TimeoutError):
            msg = (
                f"upstream {url} did not answer within {self._read_timeout_s:g}s "
                f"({type(error).__name__}; LORALOOP_GATEWAY__READ_TIMEOUT_S)"
            )
        else:
            msg = f"upstream {url} failed: {type(error).__name__} {error}".strip()
        return UpstreamError(msg)

    async def _send(self, payload: bytes, model: str) -> tuple[str, aiohttp.ClientResponse]:
        """The first replica's response that connects (round robin), status checked."""
        start = next(self._turn)
        refused = []
        for step in range(len(self._urls)):
            url = self._urls[(start + step) % len(self._urls)]
            try:
                response = await self._http().post(url + CHAT_PATH, data=payload)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
                logger.warning("upstream %s cannot be reached: %s", url, e)
                refused.append(f"{url}: {type(e).__name__} {e}".strip())
                continue
            except (aiohttp.ClientError, TimeoutError) as e:
                raise self._failed(url, e) from e
            if response.status >= ERROR_STATUS:
                try:
                    raw = await response.read()
                finally:
                    response.release()
                msg = f"upstream {url} refused {model!r}: {_reason(response.status, raw)}"
                raise UpstreamError(msg)
            return url, response
        msg = "no upstream could be reached: " + "; ".join(refused)
        raise UpstreamError(msg)

    def _model(self, adapter: str) -> str:
        return self._base_model if adapter == BASE_VERSION else adapter

    async def complete(self, request: ChatRequest, adapter: str) -> Reply:
        payload = self._payload(request, adapter, stream=False)
        url, response = await self._send(payload, self._model(adapter))
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._failed(url, e) from e
        finally:
            response.release()
        try:
            body = orjson.loads(raw)
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return Reply(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as e:
            msg = f"upstream {url} answered a body that is no chat completion: {e!r}"
            raise UpstreamError(msg) from e

    async def stream(self, request: ChatRequest, adapter: str) -> AsyncIterator[str | Usage]:
        payload = self._payload(request, adapter, stream=True)
        url, response = await self._send(payload, self._model(adapter))
        try:
            async for line in response.content:
                data = line.strip()
                if not data.startswith(DATA):
                    continue
                data = data.removeprefix(DATA).strip()
                if data == DONE:
                    break
                for piece in _pieces(data, url):
                    yield piece
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._failed(url, e) from e
        finally:
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _pieces(data: bytes, url: str) -> list[str | Usage]:
    """The text deltas of one stream chunk (and its usage, if any); an error chunk raises."""
    try:
        chunk: Any = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        msg = f"upstream {url} sent a stream chunk that is not JSON: {data[:REASON_CHARS]!r}"
        raise UpstreamError(msg) from e
    if "error" in chunk:
        msg = f"upstream {url} failed mid-stream: {str(chunk['error'])[:REASON_CHARS]}"
        raise UpstreamError(msg)
    pieces: list[str | Usage] = [
        content
        for choice in chunk.get("choices") or []
        if (content := (choice.get("delta") or {}).get("content"))
    ]
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        pieces.append(
            Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        )
    return pieces
