"""Every LORALOOP_* variable of the deployment is a real setting and is documented."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from tests.unit.deploy.conftest import COMPOSE_FILE, DEPLOY_DOC, ENV_EXAMPLE

PACKAGES = ("loraloop", "detectors", "streams", "analytics", "trainer", "gateway")
_VAR = re.compile(r"\bLORALOOP_[A-Z0-9_]*[A-Z0-9]\b")


def _settings_modules() -> None:
    """Import every ``*config`` / ``settings`` module so their classes are registered."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            leaf = info.name.rsplit(".", 1)[-1]
            if leaf.endswith("config") or leaf == "settings":
                importlib.import_module(info.name)


def _subclasses(cls: type[BaseSettings]) -> set[type[BaseSettings]]:
    found: set[type[BaseSettings]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if found := _model_type(arg):
            return found
    return None


def _names(model: type[BaseModel], prefix: str) -> set[str]:
    names = set()
    for field, info in model.model_fields.items():
        name = f"{prefix}{field}".upper()
        names.add(name)
        nested = _model_type(info.annotation)
        if nested is not None:
            names |= _names(nested, f"{name}__")
    return names


def setting_env_names() -> set[str]:
    """Every environment variable a loraloop settings class reads."""
    _settings_modules()
    names: set[str] = set()
    for cls in _subclasses(BaseSettings):
        if cls.__module__.split(".")[0] in PACKAGES:
            names |= _names(cls, str(cls.model_config.get("env_prefix", "")))
    return names


def _used() -> set[str]:
    text = COMPOSE_FILE.read_text(encoding="utf-8") + ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(_VAR.findall(text))


def test_the_collector_finds_the_known_settings() -> None:
    names = setting_env_names()
    assert {
        "LORALOOP_KAFKA_BOOTSTRAP",
        "LORALOOP_STREAM__PARTITIONS",
        "LORALOOP_KAFKA__SASL_PASSWORD",
        "LORALOOP_WAREHOUSE__CLUSTER",
        "LORALOOP_CONSOLE__ADMIN_KEY",
        "LORALOOP_TRAIN__DEVICE",
    } <= names


def test_every_variable_the_deployment_sets_is_a_setting() -> None:
    used = _used()
    assert len(used) >= 10
    assert sorted(used - setting_env_names()) == []


def test_every_variable_the_deployment_sets_is_documented() -> None:
    documented = set(_VAR.findall(DEPLOY_DOC.read_text(encoding="utf-8")))
    assert sorted(_used() - documented) == []


def test_every_variable_the_doc_names_is_a_setting() -> None:
    documented = set(_VAR.findall(DEPLOY_DOC.read_text(encoding="utf-8")))
    assert sorted(documented - setting_env_names()) == []


def test_kafka_security_and_topic_settings_are_all_documented() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    names = setting_env_names()
    wanted = {
        n
        for n in names
        if n.startswith(("LORALOOP_KAFKA__", "LORALOOP_WAREHOUSE__", "LORALOOP_STREAM__"))
    }
    assert sorted(n for n in wanted if n not in doc) == []
