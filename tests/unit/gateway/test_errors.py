"""Every error status of the gateway with its OpenAI-style body, as the openai client sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from gateway import create_gateway
from loraloop.events import KINDS
from tests.unit.gateway.fakes import (
    API_KEY,
    SLOW_S,
    FakePublisher,
    Server,
    dead_url,
    fake_upstream,
    table_router,
    upstream_parts,
)
from trainer.rollout_config import RolloutSettings
from trainer.router import Router, RoutingTable

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
ERROR_FIELDS = {"message", "type", "param", "code"}


def serve(parts: Any) -> tuple[TestClient, openai.OpenAI]:
    http = TestClient(create_gateway(parts))
    http.__enter__()
    client = openai.OpenAI(
        base_url="http://testserver/v1", api_key=API_KEY, http_client=http, max_retries=0
    )
    return http, client


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with Server(fake_upstream()) as upstream:
        yield upstream.url + "/v1"


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def gateway(
    publisher: FakePublisher, upstream_url: str
) -> Iterator[tuple[TestClient, openai.OpenAI]]:
    parts = upstream_parts(
        publisher,
        urls=[upstream_url],
        max_request_bytes=2000,
        rate_limit_per_s=0.01,
        rate_limit_burst=3,
    )
    http, client = serve(parts)
    yield http, client
    http.__exit__(None, None, None)


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_FIELDS
    return dict(body["error"])


def test_wrong_key_is_401(gateway: tuple[TestClient, openai.OpenAI]) -> None:
    http, _ = gateway
    bad = openai.OpenAI(base_url="http://testserver/v1", api_key="nope", http_client=http)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="loraloop", messages=MESSAGES, user="u")
    error = error_of(caught.value)
    assert error["code"] == "invalid_api_key"
    assert "gateway.key" in error["message"]
    assert caught.value.response.headers["WWW-Authenticate"] == "Bearer"
    assert http.get("/v1/models").status_code == 401


def test_no_user_is_400_naming_user(gateway: tuple[TestClient, openai.OpenAI]) -> None:
    _, client = gateway
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="loraloop", messages=MESSAGES)
    error = error_of(caught.value)
    assert error["param"] == "user"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "loraloop", "user": "u", "messages": []}, "messages"),
        ({"model": "loraloop", "user": "u", "messages": MESSAGES, "n": 2}, "n"),
        ({"model": "loraloop", "user": "u",
          "messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"model": "loraloop", "user": "u" * 200, "messages": MESSAGES}, "user"),
        ({"user": "u", "messages": MESSAGES}, "model"),
    ],
)  # fmt: skip
def test_bad_request_is_400_naming_the_field(
    gateway: tuple[TestClient, openai.OpenAI], body: dict[str, Any], param: str
) -> None:
    http, _ = gateway
    response = http.post("/v1/chat/completions", json=body, headers=_auth())
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_body_that_is_not_json_is_400(gateway: tuple[TestClient, openai.OpenAI]) -> None:
    http, _ = gateway
    response = http.post("/v1/chat/completions", content=b"{nope", headers=_auth())
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]["message"]


def test_unknown_model_and_path_are_404(gateway: tuple[TestClient, openai.OpenAI]) -> None:
    http, client = gateway
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="u")
    error = error_of(caught.value)
    assert error["code"] == "model_not_found"
    assert "'loraloop'" in error["message"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    missing = http.get("/v1/nothing", headers=_auth())
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == ERROR_FIELDS


def test_oversized_body_is_413(gateway: tuple[TestClient, openai.OpenAI]) -> None:
    _, client = gateway
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="loraloop", messages=[{"role": "user", "content": "x" * 5000}], user="u"
        )
    assert caught.value.status_code == 413
    error = error_of(caught.value)
    assert error["code"] == "request_too_large"
    assert "MAX_REQUEST_BYTES" in error["message"]


def test_over_the_rate_is_429_with_retry_after(gateway: tuple[TestClient, openai.OpenAI]) -> None:
    _, client = gateway
    for _ in range(3):
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="eager")
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="eager")
    assert error_of(caught.value)["code"] == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    client.chat.completions.create(model="loraloop", messages=MESSAGES, user="patient")


def _only(version: str) -> Router:
    return Router(RoutingTable(stable=version), settings=RolloutSettings())


def test_upstream_refusal_is_502_with_its_reason(
    publisher: FakePublisher, upstream_url: str
) -> None:
    parts = upstream_parts(publisher, urls=[upstream_url], router=_only("model_missing"))
    http, client = serve(parts)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u")
    assert caught.value.status_code == 502
    error = error_of(caught.value)
    assert error["type"] == "upstream_error"
    assert "adapter not loaded" in error["message"]
    with pytest.raises(openai.InternalServerError):  # a stream fails before its first byte
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u", stream=True)
    http.__exit__(None, None, None)
    assert publisher.sent == []


def test_upstream_timeout_is_502_never_a_hang(publisher: FakePublisher, upstream_url: str) -> None:
    parts = upstream_parts(
        publisher, urls=[upstream_url], router=_only("model_slow"), read_timeout_s=0.5
    )
    http, client = serve(parts)
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u")
    assert time.monotonic() - start < SLOW_S
    assert "did not answer within 0.5s" in error_of(caught.value)["message"]
    http.__exit__(None, None, None)


def test_unreachable_replica_passes_to_the_next(
    publisher: FakePublisher, upstream_url: str
) -> None:
    http, client = serve(upstream_parts(publisher, urls=[dead_url(), upstream_url]))
    for _ in range(2):  # round robin: one of the two starts at the dead replica
        reply = client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u")
        assert (reply.choices[0].message.content or "").startswith("echo hello")
    http.__exit__(None, None, None)
    http, client = serve(upstream_parts(publisher, urls=[dead_url(), dead_url()]))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="u")
    message = error_of(caught.value)["message"]
    assert message.startswith("no upstream could be reached")
    assert message.count("/v1: ClientConnectorError") == 2
    http.__exit__(None, None, None)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def test_feedback_is_validated_and_published(
    gateway: tuple[TestClient, openai.OpenAI], publisher: FakePublisher
) -> None:
    http, _ = gateway
    good = {"conversation_id": "c1", "user_id": "u", "turn_index": 1, "kind": "thumbs_down"}
    accepted = http.post("/v1/feedback", json=good, headers=_auth())
    assert accepted.status_code == 202
    [event] = publisher.events(KINDS["feedback"].topic)
    assert event["event_id"] == accepted.json()["event_id"]
    assert event["kind"] == "thumbs_down"
    refused = http.post("/v1/feedback", json={**good, "kind": "meh"}, headers=_auth())
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "kind"
    handoff = {"conversation_id": "c1", "user_id": "u", "turn_index": 2, "initiated_by": "user"}
    assert http.post("/v1/handoffs", json=handoff, headers=_auth()).status_code == 202
    outcome = {"conversation_id": "c1", "user_id": "u", "kind": "conversion", "value": 12.5}
    assert http.post("/v1/outcomes", json=outcome, headers=_auth()).status_code == 202
    assert len(publisher.sent) == 3
    publisher.fail = True
    unavailable = http.post("/v1/outcomes", json=outcome, headers=_auth())
    assert unavailable.status_code == 503
    assert "retry" in unavailable.json()["error"]["message"]
    assert http.post("/v1/feedback", json=good).status_code == 401


def test_allowlisted_user_gets_the_canary(publisher: FakePublisher, upstream_url: str) -> None:
    parts = upstream_parts(
        publisher,
        urls=[upstream_url],
        router=table_router(share=0.0, allowlist=["tester"]),
    )
    http, client = serve(parts)
    assert (
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="tester").model
        == "model_v2"
    )
    assert (
        client.chat.completions.create(model="loraloop", messages=MESSAGES, user="other").model
        == "model_v1"
    )
    http.__exit__(None, None, None)


def test_an_unexpected_failure_is_500_with_an_openai_body(publisher: FakePublisher) -> None:
    class Broken:
        async def complete(self, *_: Any) -> Any:
            msg = "kaput"
            raise RuntimeError(msg)

        async def aclose(self) -> None:
            return None

    parts = upstream_parts(publisher, urls=["http://127.0.0.1:9/v1"])
    object.__setattr__(parts, "backend", Broken())
    http = TestClient(create_gateway(parts), raise_server_exceptions=False)
    with http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "loraloop", "user": "u", "messages": MESSAGES},
            headers=_auth(),
        )
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert "RuntimeError: kaput" in error["message"]


def test_a_client_that_leaves_midstream_still_logs_what_it_was_sent(
    publisher: FakePublisher, upstream_url: str
) -> None:
    parts = upstream_parts(publisher, urls=[upstream_url], router=_only("model_drip"))
    body = {"model": "loraloop", "user": "u", "messages": MESSAGES, "stream": True}
    with Server(create_gateway(parts)) as gateway, httpx.Client(base_url=gateway.url) as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers=_auth()) as reply:
            for line in reply.iter_lines():
                if '"content":"echo' in line.replace(" ", ""):
                    break  # one word received: leave
        deadline = time.monotonic() + SLOW_S * 3
        while len(publisher.sent) < 2:
            assert time.monotonic() < deadline, "the exchange was never logged"
            time.sleep(0.05)
    user, assistant = publisher.events("llm.turns")
    assert user["role"] == "user"
    assert assistant["text"].strip() == "echo"
    assert assistant["model_version"] == "model_drip"
