"""The gateway over real HTTP in front of a fake upstream, routing through a real
``GET /v1/route`` and publishing turns to the real Tansu broker."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gateway import GatewayParts, GatewaySettings, RemoteSource, TrafficLog, create_gateway
from gateway.backends import UpstreamBackend
from loraloop.settings import KafkaSettings, StreamSettings
from streams.broker import EmbeddedBroker, free_port
from streams.producer import EventPublisher
from streams.topics import ensure_topics, topic_name
from tests.integration.conftest import open_warehouse, wait_for_turns
from tests.trainer_fixtures import tiny_checkpoint
from tests.unit.gateway.fakes import API_KEY, Server, fake_upstream, table_router
from trainer.route_api import make_route_router

__all__ = ["tiny_checkpoint"]  # the fixture, for the test that serves a real model

SERVICE_KEY = "svc-key"
READ_TIMEOUT_S = 1.0
CONSUME_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 120.0
USERS = [f"user-{i}" for i in range(8)]


def slow_upstream() -> FastAPI:
    """The fake upstream, but ``model_v2`` answers after longer than the read timeout."""
    inner = fake_upstream()
    app = FastAPI()

    @app.middleware("http")
    async def delay(request: Any, call_next: Any) -> Any:
        body = await request.body()
        if b'"model_v2"' in body:
            await asyncio.sleep(READ_TIMEOUT_S * 3)
        return await call_next(request)

    app.mount("/", inner)
    return app


@pytest.fixture
def stream(broker: EmbeddedBroker, isolated_env: Path, unique_id: str) -> StreamSettings:
    settings = StreamSettings(topic_prefix=f"t{unique_id}.")
    asyncio.run(ensure_topics(broker.bootstrap, settings, security=KafkaSettings()))
    return settings


@pytest.fixture
def gateway_url(broker: EmbeddedBroker, stream: StreamSettings) -> Iterator[str]:
    routes_app = FastAPI()
    routes_app.include_router(make_route_router(table_router(), service_key=SERVICE_KEY))
    with Server(routes_app) as routes, Server(slow_upstream()) as upstream:
        gw = GatewaySettings(
            backend="openai", upstreams=[upstream.url + "/v1"], read_timeout_s=READ_TIMEOUT_S
        )
        registry = CollectorRegistry()
        parts = GatewayParts(
            settings=gw,
            registry=registry,
            backend=UpstreamBackend(
                urls=gw.upstreams,
                api_key=None,
                base_model="base",
                connect_timeout_s=gw.connect_timeout_s,
                read_timeout_s=gw.read_timeout_s,
                max_connections=gw.max_connections,
            ),
            routes=RemoteSource(
                url=routes.url,
                timeout_s=gw.connect_timeout_s,
                service_key=SERVICE_KEY,
                cache_s=gw.route_cache_s,
                cache_users=gw.route_cache_users,
            ),
            traffic=TrafficLog(
                lambda: EventPublisher(broker.bootstrap, stream, security=KafkaSettings()),
                queue_size=gw.publish_queue,
                batch=gw.publish_batch,
                registry=registry,
            ),
            api_key=API_KEY,
        )
        with Server(create_gateway(parts)) as served:
            yield served.url + "/v1"


async def _turns(bootstrap: str, topic: str, count: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            found += [orjson.loads(r.value) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return found


def test_turns_reach_the_broker_with_the_served_version(
    broker: EmbeddedBroker, stream: StreamSettings, gateway_url: str
) -> None:
    client = openai.OpenAI(base_url=gateway_url, api_key=API_KEY, max_retries=0)
    router = table_router()
    fast = [u for u in USERS if router.assign(u).version == "model_v1"]
    assert fast, "some users must be on the stable version"
    conversations = {}
    for user in fast:
        raw = client.chat.completions.with_raw_response.create(
            model="loraloop", messages=[{"role": "user", "content": f"hi from {user}"}], user=user
        )
        assert raw.headers["X-Loraloop-Version"] == "model_v1"
        conversations[user] = raw.headers["X-Loraloop-Conversation"]
        with client.chat.completions.with_streaming_response.create(
            model="loraloop",
            messages=[{"role": "user", "content": "again"}],
            user=user,
            stream=True,
            extra_headers={"X-Loraloop-Conversation": conversations[user]},
        ) as response:
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        assert text.strip() == "echo again from model_v1"
    turns = asyncio.run(_turns(broker.bootstrap, topic_name(stream, "llm.turns"), 4 * len(fast)))
    assert len(turns) == 4 * len(fast)
    for user in fast:
        mine = sorted((t for t in turns if t["user_id"] == user), key=lambda t: t["turn_index"])
        assert [(t["turn_index"], t["role"]) for t in mine] == [
            (0, "user"), (1, "assistant"), (2, "user"), (3, "assistant"),
        ]  # fmt: skip
        assert {t["conversation_id"] for t in mine} == {conversations[user]}
        assert [t["model_version"] for t in mine if t["role"] == "assistant"] == ["model_v1"] * 2
        assert mine[0]["text"] == f"hi from {user}"


def test_a_slow_upstream_is_a_502_not_a_hang(gateway_url: str) -> None:
    client = openai.OpenAI(base_url=gateway_url, api_key=API_KEY, max_retries=0, timeout=30)
    router = table_router()
    slow = next(u for u in USERS if router.assign(u).version == "model_v2")
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="loraloop", messages=[{"role": "user", "content": "hi"}], user=slow
        )
    assert time.monotonic() - start < READ_TIMEOUT_S * 2.5
    assert caught.value.status_code == 502
    assert "did not answer within" in caught.value.response.json()["error"]["message"]


def test_loraloop_gateway_command_serves_and_publishes(
    broker: EmbeddedBroker,
    stream: StreamSettings,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routes_app = FastAPI()
    routes_app.include_router(make_route_router(table_router(), service_key=SERVICE_KEY))
    port = free_port()
    with Server(routes_app) as routes, Server(fake_upstream()) as upstream:
        env = {
            "LORALOOP_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LORALOOP_STREAM__SERVICE_KEY": SERVICE_KEY,
            "LORALOOP_GATEWAY__ROUTE_URL": routes.url,
            "LORALOOP_GATEWAY__UPSTREAMS": f'["{upstream.url}/v1"]',
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        command = [sys.executable, "-m", "loraloop", "gateway", "--backend", "openai",
                   "--port", str(port)]  # fmt: skip
        with subprocess.Popen(command, env=dict(os.environ)) as child:
            try:
                key_file = isolated_env / "gateway.key"
                url = f"http://127.0.0.1:{port}"
                _wait_for(url + "/health", child)
                assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
                client = openai.OpenAI(
                    base_url=url + "/v1", api_key=key_file.read_text().strip(), max_retries=0
                )
                reply = client.chat.completions.create(
                    model="loraloop", messages=[{"role": "user", "content": "hi"}], user="zoe"
                )
                assert reply.model == table_router().assign("zoe").version
                assert reply.choices[0].message.content == f"echo hi from {reply.model}"
                assert _kept_alive(port, UVICORN_KEEP_ALIVE_S + 1)
            finally:
                child.terminate()
                child.wait(timeout=30)
    turns = asyncio.run(_turns(broker.bootstrap, topic_name(stream, "llm.turns"), 2))
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[1]["model_version"] == reply.model


UVICORN_KEEP_ALIVE_S = 5
"""uvicorn's default, and httpx's pool expiry: a server closing at the client's expiry races it."""


def _kept_alive(port: int, idle_s: float) -> bool:
    """Whether one connection answers a second request after ``idle_s`` of silence."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health")
        assert conn.getresponse().read()
        time.sleep(idle_s)
        conn.request("GET", "/health")  # on the same socket: http.client does not reconnect
        return conn.getresponse().status == httpx.codes.OK
    except (http.client.RemoteDisconnected, ConnectionError):  # closed by the server
        return False
    finally:
        conn.close()


def _wait_for(url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert child.poll() is None, "loraloop gateway exited"
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"loraloop gateway did not answer on {url}")


@contextlib.contextmanager
def _stack_with_gateway(monkeypatch: pytest.MonkeyPatch, gateway: dict[str, str]) -> Iterator[str]:
    """`loraloop up` in a child process with these LORALOOP_GATEWAY__ settings (and its
    port); yields the gateway's address once it answers, stops the stack after."""
    port = free_port()
    for name, value in {**gateway, "IN_STACK": "true", "PORT": str(port)}.items():
        monkeypatch.setenv(f"LORALOOP_GATEWAY__{name}", value)
    with subprocess.Popen(
        [sys.executable, "-m", "loraloop", "up"], env=dict(os.environ, NO_COLOR="1")
    ) as stack:
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for(url + "/health", stack)
            yield url
        finally:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=60)


def _stack_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with open_warehouse(data_dir) as warehouse:
        return list(warehouse.query(sql).result_rows)


def test_up_serves_the_gateway_turns_and_feedback_land_in_the_warehouse(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        Server(fake_upstream()) as upstream,
        _stack_with_gateway(
            monkeypatch, {"BACKEND": "openai", "UPSTREAMS": f'["{upstream.url}/v1"]'}
        ) as url,
    ):
        key = (isolated_env / "gateway.key").read_text().strip()
        stack_info = json.loads((isolated_env / "stack.json").read_text())
        assert stack_info["gateway_url"] == url + "/v1"  # clients find it there
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="loraloop", messages=[{"role": "user", "content": "hi"}], user="amy"
        )
        conversation = raw.headers["X-Loraloop-Conversation"]
        assert raw.parse().model == "base"
        feedback = httpx.post(
            url + "/v1/feedback",
            headers={"Authorization": f"Bearer {key}"},
            json={"conversation_id": conversation, "user_id": "amy",
                  "turn_index": int(raw.headers["X-Loraloop-Turn-Index"]),
                  "kind": "thumbs_down"},
        )  # fmt: skip
        assert feedback.status_code == 202
        assert f"chat gateway: {url}/v1" in wait_for_turns(2, CONSUME_TIMEOUT_S)
    turns = _stack_rows(
        isolated_env,
        "SELECT turn_index, role, model_version, conversation_id FROM turns FINAL "
        "ORDER BY turn_index",
    )
    assert turns == [(0, "user", "", conversation), (1, "assistant", "base", conversation)]
    [(kind, index)] = _stack_rows(isolated_env, "SELECT kind, turn_index FROM feedback FINAL")
    assert (kind, index) == ("thumbs_down", 1)


def test_up_serves_the_tiny_model_whole_and_streamed_and_logs_both_exchanges(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path
) -> None:
    """The embedded default: `loraloop up`'s gateway with the local backend on a real (tiny)
    model, a completion then a streamed follow-up in one conversation, through `openai`."""
    settings = {"BACKEND": "local", "BASE_MODEL": str(tiny_checkpoint), "MAX_NEW_TOKENS": "8"}
    with _stack_with_gateway(monkeypatch, settings) as url:
        key = (isolated_env / "gateway.key").read_text().strip()
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        question = [{"role": "user", "content": "where is my order"}]
        raw = client.chat.completions.with_raw_response.create(
            model="loraloop",
            messages=question,
            user="ivy",  # type: ignore[arg-type]
        )
        first = raw.parse()
        conversation = raw.headers["X-Loraloop-Conversation"]
        assert (first.model, raw.headers["X-Loraloop-Version"]) == ("base", "base")
        assert first.usage is not None
        assert 0 < first.usage.completion_tokens <= 8
        history: Any = [
            *question,
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "and the refund?"},
        ]
        chunks = list(
            client.chat.completions.create(
                model="loraloop", messages=history, user="ivy", stream=True,
                metadata={"conversation_id": conversation},
            )
        )  # fmt: skip
        assert {c.model for c in chunks} == {"base"}
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        wait_for_turns(4, CONSUME_TIMEOUT_S)
    turns = _stack_rows(
        isolated_env,
        "SELECT turn_index, role, model_version, text, conversation_id FROM turns FINAL "
        "ORDER BY turn_index",
    )
    assert {t[4] for t in turns} == {conversation}
    assert [t[:3] for t in turns] == [
        (0, "user", ""), (1, "assistant", "base"), (2, "user", ""), (3, "assistant", "base"),
    ]  # fmt: skip
    assert turns[1][3] == first.choices[0].message.content
    assert turns[2][3] == "and the refund?"
    assert turns[3][3] == streamed
