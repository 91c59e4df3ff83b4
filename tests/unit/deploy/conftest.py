"""Shared fixtures of the deployment tests: the compose file, parsed once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
ENV_EXAMPLE = ROOT / "deploy" / "loraloop.env.example"


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    import yaml  # a dev dependency: missing means a broken install, never a skip

    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="session")
def loraloop_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the loraloop image (built from deploy/Dockerfile)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }
