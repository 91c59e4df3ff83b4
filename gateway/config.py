"""The gateway's settings (``LORALOOP_GATEWAY__*``), read once by the composition root."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class GatewaySettings(BaseSettings):
    """The OpenAI-compatible chat gateway: binding, backend, limits, timeouts, publishing."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_GATEWAY__", env_nested_delimiter="__", extra="ignore"
    )

    in_stack: bool = Field(
        True,
        description="`loraloop up` serves the gateway too (on host:port, with the stack's own "
        "router and broker; its address in stack.json under gateway_url); off: run "
        "`loraloop gateway` beside the stack.",
    )
    host: str = Field("127.0.0.1", description="Bind address of `loraloop gateway`.")
    port: int = Field(8400, ge=0, le=65535, description="Port of `loraloop gateway`.")
    api_key: SecretStr | None = Field(
        None,
        description="The bearer key clients send (`Authorization: Bearer <key>`, the openai "
        "client's api_key); unset: <data_dir>/gateway.key, generated once with mode 0600.",
    )
    model_aliases: list[str] = Field(
        default_factory=lambda: ["loraloop"],
        description="Model names clients may ask for (the first is listed first by "
        "GET /v1/models); any other name is a 404. The router picks the version, whatever "
        "the alias.",
    )
    backend: Literal["local", "openai"] = Field(
        "local",
        description="`local`: the registry's base model with its LoRA adapters in process "
        "(transformers + peft); `openai`: OpenAI-compatible upstreams (vLLM, SGLang, TGI).",
    )
    upstreams: list[str] = Field(
        default_factory=list,
        description="Base URLs of the `openai` backend's replicas, e.g. "
        '\'["http://vllm-0:8000/v1","http://vllm-1:8000/v1"]\'; requests go round robin, and '
        "to the next replica when one cannot be reached.",
    )
    upstream_api_key: SecretStr | None = Field(
        None, description="Bearer key the `openai` backend sends upstream (vLLM's --api-key)."
    )
    upstream_base_model: str = Field(
        "base",
        description="The upstream's name of the base model (vLLM's --served-model-name), "
        "asked for when the router picks `base`; adapters are asked for by version (model_vN).",
    )
    connect_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Seconds to connect to an upstream before it counts as down; also the "
        "whole budget of a question to the stack's router.",
    )
    read_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Seconds an upstream may go silent (between stream chunks, or before a "
        "whole reply) before the request fails with 502.",
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        description="Seconds the gateway keeps an idle client connection open. Longer than "
        "a client's own pool expiry (httpx, and so the openai client: 5 s), so a client never "
        "reuses a connection the gateway is closing that instant (a read error, not a retry).",
    )
    max_connections: int = Field(
        256, ge=1, description="Open connections to the upstreams at most (all replicas)."
    )
    max_request_bytes: int = Field(
        1 * MIB, ge=1, description="Largest request body accepted; a bigger one is a 413."
    )
    rate_limit_per_s: float = Field(
        20.0,
        ge=0,
        description="Sustained requests per second allowed per end user (token bucket); 0 "
        "turns rate limiting off. Over it: 429 with Retry-After.",
    )
    rate_limit_burst: int = Field(
        40, ge=1, description="Requests an end user may send at once before the rate applies."
    )
    rate_limit_users: int = Field(
        100_000, ge=1, description="End users whose buckets are kept (least recent dropped)."
    )
    conversations_kept: int = Field(
        100_000,
        ge=1,
        description="Conversations whose next turn index the gateway remembers (LRU), for "
        "clients that send only the newest message; full histories need no memory.",
    )
    route_url: str = Field(
        "",
        description="Base URL of the stack's router (GET /v1/route); empty: the console "
        "address in <data_dir>/stack.json.",
    )
    route_cache_s: float = Field(
        1.0,
        ge=0,
        description="Seconds a user's routing decision is reused before the router is asked "
        "again (a rollout step reaches users within this); 0 asks on every request.",
    )
    route_cache_users: int = Field(
        100_000, ge=1, description="Users whose routing decision is cached at most."
    )
    publish_queue: int = Field(
        10_000,
        ge=1,
        description="Turns waiting to be published at most; when full, requests wait for room "
        "(backpressure) rather than dropping traffic capture would need.",
    )
    publish_batch: int = Field(
        32,
        ge=1,
        description="Turns handed to the producer at once at most: the producer takes a "
        "batch without yielding the event loop, so a large one delays every reply behind it.",
    )
    base_model: str = Field(
        "",
        description="`local` backend: the base checkpoint directory; empty: the trainer's "
        "(LORALOOP_TRAIN__BASE_MODEL, else the cached SmolLM2).",
    )
    max_new_tokens: int = Field(
        256, ge=1, description="`local` backend: tokens generated per reply at most."
    )
    batch_size: int = Field(
        8,
        ge=1,
        description="`local` backend: whole replies generated together at most (same version "
        "and temperature, asked for at the same time); 1 generates one at a time.",
    )
    batch_wait_s: float = Field(
        0.005,
        ge=0,
        description="`local` backend: seconds a reply waits for others to share its batch.",
    )
    adapter_cache_size: int = Field(
        4,
        ge=1,
        description="`local` backend: LoRA adapters kept loaded at most (least recently used "
        "unloaded first); a canary rollout needs two.",
    )
    reply_cache_size: int = Field(
        0,
        ge=0,
        description="`local` backend: greedy whole replies (no temperature) kept per adapter, "
        "conversation and token limit, answered again without generating; identical requests "
        "in flight share one generation. 0 (default) turns it off.",
    )
    max_lora_rank: int | None = Field(
        None,
        ge=1,
        description="`local` backend: the highest LoRA rank it loads (as vLLM's "
        "--max-lora-rank); reported in /v1/models so the adapter controller checks it before "
        "loading. Empty: any rank.",
    )
