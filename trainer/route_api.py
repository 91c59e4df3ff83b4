"""``GET /v1/route?user_id=…``: which version and adapter serve a user.

The serving layer asks this before generating a reply and loads the returned LoRA
adapter (vLLM multi-LoRA: the adapter name is the version name). A missing or empty
``user_id`` is a 422 whose detail names the field. Mount the router in any FastAPI app:
``app.include_router(make_route_router(router))``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from trainer.router import Router


class RouteResponse(BaseModel):
    """Where the user's request goes."""

    version: str = Field(description="The model version that serves the user.")
    adapter: str = Field(description="The LoRA adapter to load (model_vN).")
    canary: bool = Field(description="True when the version is the canary of a rollout.")


def make_route_router(router: Router) -> APIRouter:
    """An APIRouter answering ``GET /v1/route`` from ``router`` (assignments recorded)."""
    api = APIRouter(prefix="/v1", tags=["routing"])

    @api.get("/route", response_model=RouteResponse)
    def route(
        user_id: Annotated[
            str, Query(min_length=1, description="The id of the user being served.")
        ],
    ) -> RouteResponse:
        decision = router.route(user_id)
        return RouteResponse(
            version=decision.version, adapter=decision.adapter_name, canary=decision.is_canary
        )

    return api
