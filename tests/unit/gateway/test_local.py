"""The ``local`` backend on the tiny model: routed adapters, streaming, a bounded cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from gateway import GatewayParts, GatewaySettings, RouterSource, TrafficLog, create_gateway
from gateway.backends import LocalBackend
from tests.unit.gateway.fakes import API_KEY, FakePublisher, table_router
from trainer.rollout_config import RolloutSettings
from trainer.router import Router, RoutingTable

MESSAGES: list[Any] = [{"role": "user", "content": "where is my order"}]
VERSIONS = ("model_v1", "model_v2", "model_v3")


@pytest.fixture(scope="module")
def registry(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with three random (non-zero) LoRA adapters of the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("registry")
    for seed, version in enumerate(VERSIONS):
        import torch

        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(root / version)
    return root


@pytest.fixture(scope="module")
def backend(tiny_checkpoint: Path, registry: Path) -> LocalBackend:
    return LocalBackend.from_checkpoint(
        tiny_checkpoint, registry_root=registry, max_new_tokens=8, adapter_cache_size=2
    )


def _client(backend: LocalBackend, router: Router, publisher: FakePublisher) -> Iterator[Any]:
    registry = CollectorRegistry()
    parts = GatewayParts(
        settings=GatewaySettings(),
        registry=registry,
        backend=backend,
        routes=RouterSource(router),
        traffic=TrafficLog(lambda: publisher, queue_size=100, batch=10, registry=registry),
        api_key=API_KEY,
    )
    with TestClient(create_gateway(parts)) as http:
        yield openai.OpenAI(
            base_url="http://testserver/v1", api_key=API_KEY, http_client=http, max_retries=0
        )


def test_completion_and_stream_from_the_routed_adapter(backend: LocalBackend) -> None:
    publisher = FakePublisher()
    for client in _client(backend, table_router(), publisher):
        for user in ("ann", "ben", "cat", "dan"):
            raw = client.chat.completions.with_raw_response.create(
                model="loraloop", messages=MESSAGES, user=user
            )
            reply = raw.parse()
            assert reply.model == table_router().assign(user).version
            assert raw.headers["X-Loraloop-Version"] == reply.model
            assert reply.usage is not None
            assert 0 < reply.usage.completion_tokens <= 8
            stream = list(
                client.chat.completions.create(
                    model="loraloop", messages=MESSAGES, user=user, stream=True,
                    stream_options={"include_usage": True},
                )
            )  # fmt: skip
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert streamed.strip() == (reply.choices[0].message.content or "").strip()
            assert stream[-1].usage is not None
            assert stream[-1].usage.completion_tokens == reply.usage.completion_tokens
    turns = publisher.events("llm.turns")
    assert len(turns) == 16
    assert {t["model_version"] for t in turns if t["role"] == "assistant"} <= {
        "model_v1",
        "model_v2",
    }


def test_adapter_cache_is_bounded(backend: LocalBackend) -> None:
    for version in VERSIONS:
        router = Router(RoutingTable(stable=version), settings=RolloutSettings())
        for client in _client(backend, router, FakePublisher()):
            assert (
                client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u").model
                == version
            )
    assert backend.loaded == ["model_v2", "model_v3"]


def test_base_and_missing_adapters(backend: LocalBackend) -> None:
    base = Router(RoutingTable(stable="base"), settings=RolloutSettings())
    for client in _client(backend, base, FakePublisher()):
        assert (
            client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u").model
            == "base"
        )
    missing = Router(RoutingTable(stable="model_v9"), settings=RolloutSettings())
    for client in _client(backend, missing, FakePublisher()):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u")
        assert caught.value.response.json()["error"]["code"] == "adapter_unavailable"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="loraloop", messages=MESSAGES, user="u", stream=True
            )


def test_concurrent_replies_of_a_version_share_a_batch(
    tiny_checkpoint: Path, registry: Path
) -> None:
    import asyncio

    from gateway.schemas import ChatRequest

    batched = LocalBackend.from_checkpoint(
        tiny_checkpoint, registry_root=registry, max_new_tokens=8, adapter_cache_size=2,
        batch_size=4, batch_wait_s=0.05,
    )  # fmt: skip
    request = ChatRequest(model="loraloop", messages=MESSAGES, max_tokens=6)

    async def together() -> list[str]:
        replies = await asyncio.gather(*(batched.complete(request, "model_v1") for _ in range(4)))
        return [r.text for r in replies]

    texts = asyncio.run(together())
    assert batched.batches == 1
    alone = asyncio.run(batched.complete(request, "model_v1"))
    assert batched.batches == 2
    assert texts == [alone.text] * 4
    assert alone.completion_tokens <= 6


def test_greedy_replies_are_cached_and_shared_in_flight(
    tiny_checkpoint: Path, registry: Path
) -> None:
    import asyncio

    from gateway.schemas import ChatRequest

    cached = LocalBackend.from_checkpoint(
        tiny_checkpoint, registry_root=registry, max_new_tokens=8, adapter_cache_size=1,
        batch_size=4, batch_wait_s=0.05, reply_cache_size=16,
    )  # fmt: skip
    ask = ChatRequest(model="loraloop", messages=MESSAGES, max_tokens=6)
    other = ChatRequest(model="loraloop", messages=[{"role": "user", "content": "refund"}])

    async def run() -> None:
        first = await asyncio.gather(*(cached.complete(ask, "model_v1") for _ in range(3)))
        assert cached.generated["model_v1"] == 1  # three identical requests, one generation
        assert cached.cache_hits == 2
        again = await cached.complete(ask, "model_v1")
        assert again == first[0]
        assert cached.generated["model_v1"] == 1
        await cached.complete(other, "model_v1")  # another conversation is generated
        await cached.complete(ask.model_copy(update={"max_tokens": 3}), "model_v1")
        assert cached.generated["model_v1"] == 3  # and so is another token limit
        await cached.complete(ask, "model_v2")  # evicts model_v1 (a cache of one adapter)
        await cached.complete(ask, "model_v1")  # reloaded: its earlier replies are forgotten
        assert cached.generated == {"model_v1": 4, "model_v2": 1}
        sampled = ask.model_copy(update={"temperature": 0.7})
        await cached.complete(sampled, "model_v1")
        await cached.complete(sampled, "model_v1")
        assert cached.generated["model_v1"] == 6  # sampled replies are never cached

    asyncio.run(run())


def test_merged_adapter_serves_the_same_greedy_reply(tiny_checkpoint: Path, registry: Path) -> None:
    """Folding the adapter into the weights while generating changes no greedy reply."""
    import asyncio

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gateway.schemas import ChatRequest

    served = LocalBackend.from_checkpoint(
        tiny_checkpoint, registry_root=registry, max_new_tokens=8, adapter_cache_size=1
    )
    request = ChatRequest(model="loraloop", messages=MESSAGES, max_tokens=8)
    reply = asyncio.run(served.complete(request, "model_v2"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_checkpoint), str(registry / "model_v2")
    ).eval()
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    unmerged = tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply.text == unmerged.strip()
