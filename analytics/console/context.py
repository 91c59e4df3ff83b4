"""What every request handler needs: the warehouse, the settings, the user store."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from fastapi import Request

from analytics.console.config import ConsoleSettings
from analytics.console.users import UserStore
from analytics.warehouse import Warehouse

SECRET_BYTES: Final = 32

LagProvider = Callable[[], Mapping[str, int]]
"""Consumer lag per topic (or partition) of the running stream worker, for the dashboards."""

ServingProblem = Callable[[], str | None]
"""Why the rollout service cannot serve the rollout's adapters now (None: nothing)."""


@dataclass
class ConsoleContext:
    """Shared by the routers through ``app.state.console``."""

    warehouse: Warehouse
    settings: ConsoleSettings
    users: UserStore
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(SECRET_BYTES))
    lag_provider: LagProvider | None = None
    serving_problem: ServingProblem | None = None

    @classmethod
    def build(cls, warehouse: Warehouse, settings: ConsoleSettings) -> ConsoleContext:
        ctx = cls(warehouse=warehouse, settings=settings, users=UserStore(warehouse, settings))
        if settings.session_secret is not None and settings.session_secret.get_secret_value():
            ctx.session_secret = settings.session_secret.get_secret_value().encode()
        return ctx


def context(request: Request) -> ConsoleContext:
    """FastAPI dependency: the console context of the app serving ``request``."""
    ctx: ConsoleContext = request.app.state.console
    return ctx
