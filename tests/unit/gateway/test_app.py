"""The gateway through the official ``openai`` client, in front of a fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from gateway import create_gateway
from loraloop.events import KINDS
from tests.unit.gateway.fakes import (
    API_KEY,
    FakePublisher,
    Server,
    fake_upstream,
    table_router,
    upstream_parts,
)

TURNS = KINDS["turn"].topic
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


def flush(http: TestClient) -> None:
    """Wait until the gateway has handed every queued turn to the publisher."""
    assert http.portal is not None
    http.portal.call(http.app.state.parts.traffic.flushed)  # type: ignore[attr-defined]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def http(publisher: FakePublisher, seen: list[dict[str, Any]]) -> Iterator[TestClient]:
    with Server(fake_upstream(seen)) as upstream:
        parts = upstream_parts(publisher, urls=[upstream.url + "/v1"])
        with TestClient(create_gateway(parts)) as client:
            yield client


@pytest.fixture
def client(http: TestClient) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=API_KEY, http_client=http, max_retries=0
    )


def test_completion_names_the_routed_version(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="loraloop", messages=MESSAGES, user="alice"
    )
    completion = raw.parse()
    decision = table_router().assign("alice")
    assert completion.model == decision.version
    assert raw.headers["X-Loraloop-Version"] == decision.version
    assert completion.choices[0].message.content == f"echo hello from {decision.adapter_name}"
    assert raw.headers["X-Loraloop-Conversation"].startswith("conv-")
    assert completion.usage is not None
    assert completion.usage.total_tokens == 7


def test_a_users_version_is_sticky_and_both_arms_serve(client: openai.OpenAI) -> None:
    versions: dict[str, set[str]] = {}
    for user in [f"user-{i}" for i in range(20)]:
        for _ in range(3):
            reply = client.chat.completions.create(model="loraloop", messages=MESSAGES, user=user)
            versions.setdefault(user, set()).add(reply.model)
    assert all(len(v) == 1 for v in versions.values())
    assert set().union(*versions.values()) == {"model_v1", "model_v2"}


def test_stream_arrives_in_chunks_with_the_version(
    client: openai.OpenAI, http: TestClient, publisher: FakePublisher
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="loraloop", messages=MESSAGES, user="bob", stream=True
    ) as response:
        version = response.headers["X-Loraloop-Version"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == f"echo hello from {version}"
    assert {c.model for c in chunks} == {version}
    assert chunks[-1].choices[0].finish_reason == "stop"
    flush(http)
    turns = publisher.events(TURNS)
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[1]["text"].strip() == text.strip()
    assert turns[1]["model_version"] == version


def test_turns_continue_the_conversation(
    client: openai.OpenAI, http: TestClient, publisher: FakePublisher
) -> None:
    first = client.chat.completions.with_raw_response.create(
        model="loraloop", messages=MESSAGES, extra_headers={"X-Loraloop-User": "carol"}
    )
    conversation = first.headers["X-Loraloop-Conversation"]
    answer = first.parse().choices[0].message.content
    history = [*MESSAGES, {"role": "assistant", "content": answer},
               {"role": "user", "content": "and then?"}]  # fmt: skip
    second = client.chat.completions.with_raw_response.create(
        model="loraloop",
        messages=[{"role": "system", "content": "be brief"}, *history],
        safety_identifier="carol",
        metadata={"conversation_id": conversation},
    )
    assert second.headers["X-Loraloop-Turn-Index"] == "3"
    flush(http)
    turns = publisher.events(TURNS)
    assert [(t["turn_index"], t["role"]) for t in turns] == [
        (0, "user"), (1, "assistant"), (2, "user"), (3, "assistant"),
    ]  # fmt: skip
    assert {t["conversation_id"] for t in turns} == {conversation}
    assert {t["user_id"] for t in turns} == {"carol"}
    assert turns[3]["model_version"] == second.headers["X-Loraloop-Version"]


def test_models_lists_the_alias(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["loraloop"]


def test_loraloop_fields_stay_out_of_the_upstream_request(
    client: openai.OpenAI, seen: list[dict[str, Any]]
) -> None:
    client.chat.completions.create(
        model="loraloop", messages=MESSAGES, user="dave", metadata={"conversation_id": "c1"},
        temperature=0.5,
    )  # fmt: skip
    assert "metadata" not in seen[0]
    assert seen[0]["temperature"] == 0.5
    assert seen[0]["model"] in {"model_v1", "model_v2"}


def test_stream_ends_with_usage_when_asked(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="loraloop", messages=MESSAGES, user="erin", stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    plain = list(
        client.chat.completions.create(
            model="loraloop", messages=MESSAGES, user="erin", stream=True
        )
    )
    assert all(c.usage is None for c in plain)
