"""The OpenAI chat-completions request the gateway reads, and the bodies it writes."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loraloop.events import MAX_ID_CHARS

ChatRole = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(BaseModel):
    """A text part of a message's content (other part types are refused)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation the client sends."""

    model_config = ConfigDict(extra="allow")

    role: ChatRole
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        """The content as plain text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; fields the gateway does not read go upstream as sent."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    user: str | None = Field(None, max_length=MAX_ID_CHARS)
    safety_identifier: str | None = Field(None, max_length=MAX_ID_CHARS)
    metadata: dict[str, str] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            msg = "only n=1 is served: send one request per reply"
            raise ValueError(msg)
        return value

    @property
    def wants_usage(self) -> bool:
        """True when a stream should end with a usage chunk (``stream_options``)."""
        options = getattr(self, "stream_options", None)
        return isinstance(options, dict) and bool(options.get("include_usage"))

    @property
    def token_limit(self) -> int | None:
        """The reply's token limit the client asked for, if any."""
        return self.max_completion_tokens or self.max_tokens

    def conversation(self) -> list[dict[str, str]]:
        """The messages in chat-template form (role, content)."""
        return [{"role": m.role, "content": m.text} for m in self.messages]


class Usage(BaseModel):
    """Tokens a reply took; a stream's last item when the backend knows them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def body(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class Reply(Usage):
    """What a backend generated for one request."""

    text: str
    finish_reason: str = "stop"


def completion_id() -> str:
    """A fresh ``chatcmpl-`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(reply: Reply, *, ident: str, version: str) -> dict[str, Any]:
    """The ``chat.completion`` object of ``reply``."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": version,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": reply.body(),
    }


def chunk_body(
    *, ident: str, created: int, version: str, delta: dict[str, str], finish: str | None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": version,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def usage_chunk_body(*, ident: str, created: int, version: str, usage: Usage) -> dict[str, Any]:
    """The last chunk of a stream asked for with ``include_usage``: no choices, the usage."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": version,
        "choices": [],
        "usage": usage.body(),
    }


class LoadAdapter(BaseModel):
    """``POST /v1/load_lora_adapter`` (vLLM's body)."""

    lora_name: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    lora_path: str = Field(min_length=1)


class UnloadAdapter(BaseModel):
    """``POST /v1/unload_lora_adapter`` (vLLM's body)."""

    lora_name: str = Field(min_length=1, max_length=MAX_ID_CHARS)
