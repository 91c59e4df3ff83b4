"""docker-compose.yml: valid against the Compose specification, and wired as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.conftest import ROOT

SCHEMA = Path(__file__).resolve().parents[2] / "data" / "compose-spec.json"
"""The official compose-spec.json, vendored from check-jsonschema's builtin schemas."""


@pytest.fixture(scope="module")
def validator() -> Any:
    import jsonschema  # a dev dependency: missing means a broken install, never a skip

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def test_compose_file_validates_against_the_compose_spec(
    validator: Any, compose: dict[str, Any]
) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_an_unknown_service_key(validator: Any, compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["healthcheck_typo"] = {}
    assert list(validator.iter_errors(broken))


def test_every_component_of_the_topology_is_there(compose: dict[str, Any]) -> None:
    images = {name: s.get("image", "") for name, s in compose["services"].items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:")
    assert images["grafana"].startswith("grafana/grafana:")
    commands = {name: s.get("command", [None])[0] for name, s in compose["services"].items()}
    assert {"topics", "migrate", "worker", "trainer", "web"} <= set(commands.values())


def test_kafka_runs_kraft_without_zookeeper(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_workers_are_replicated_in_one_consumer_group(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker
    assert "ports" not in worker  # replicas cannot share a host port
    assert worker["environment"]["LORALOOP_STREAM__APP_ID"]


def test_servers_and_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name in ("kafka", "clickhouse", "worker", "web", "grafana"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_start_order_waits_for_health_and_one_shot_jobs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("worker", "trainer", "web"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )


def test_volumes_for_kafka_clickhouse_and_the_shared_registry(compose: dict[str, Any]) -> None:
    assert {"kafka-data", "clickhouse-data", "registry"} <= set(compose["volumes"])
    services = compose["services"]
    assert "kafka-data:/var/lib/kafka/data" in services["kafka"]["volumes"]
    assert "clickhouse-data:/var/lib/clickhouse" in services["clickhouse"]["volumes"]
    for name in ("trainer", "trainer-gpu", "web"):
        assert "registry:/var/lib/loraloop" in services[name]["volumes"], name


def test_the_gpu_trainer_is_optional_and_reserves_an_nvidia_device(
    compose: dict[str, Any],
) -> None:
    gpu = compose["services"]["trainer-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert "BASE_IMAGE" in gpu["build"]["args"]
    assert "profiles" not in compose["services"]["trainer"]


def test_grafana_gets_the_clickhouse_plugin_and_the_provisioned_dashboards(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards/loraloop"
    for source in ("deploy/grafana/provisioning", "deploy/grafana/dashboards"):
        assert (ROOT / source).is_dir()
    provider = (ROOT / "deploy/grafana/provisioning/dashboards/loraloop.yaml").read_text()
    assert "/var/lib/grafana/dashboards/loraloop" in provider


def test_no_password_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), (name, key)
                assert ":?" in str(value), (name, key)


def test_every_loraloop_process_gets_the_one_required_service_key(
    loraloop_services: dict[str, dict[str, Any]],
) -> None:
    for name, service in loraloop_services.items():
        key = service["environment"].get("LORALOOP_STREAM__SERVICE_KEY")
        assert key == "${SERVICE_KEY:?set SERVICE_KEY in .env}", name


def test_the_dockerfile_pins_torch_on_a_cpu_base_with_a_cuda_build_argument() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "whl/cpu" in text
    torch_at = text.index('"torch==${TORCH_VERSION}"')
    assert torch_at < text.index('pip install ".[train]"')
    assert 'ENTRYPOINT ["loraloop"]' in text
