"""``GET /v1/route?user_id=…&serve=true``: which version and adapter serve a user.

The serving layer asks this before generating a reply and loads the returned LoRA
adapter (vLLM multi-LoRA: the adapter name is the version name). Mount the router in
any FastAPI app: ``app.include_router(make_route_router(router, service_key=key))``.

- Every call needs the service key (``Authorization: Bearer <key>``), else 401: the
  answer reveals the rollout and a served call writes an ``assignments`` row, which
  the canary comparison counts.
- ``user_id`` is 1 to ``MAX_ID_CHARS`` characters, the bound the event contracts put
  on it (a longer id can never have a conversation to compare); otherwise 422, whose
  detail names the field.
- Only served traffic is recorded. ``serve=true`` says "this reply is being generated
  with the returned adapter now" (the chat gateway sets it on each request it serves):
  the user's first exposure to the version is written to ``assignments``. Without it
  the call is a lookup (a dashboard, a test, a prefetch) and writes nothing, so lookups
  cannot add users who were never served to the comparison.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, Field

from loraloop.events import MAX_ID_CHARS
from loraloop.service_key import key_matches
from trainer.router import Router

UNAUTHORIZED: Final = 401
NO_KEY_DETAIL: Final = (
    "GET /v1/route needs the service key: send 'Authorization: Bearer <key>' "
    "(LORALOOP_STREAM__SERVICE_KEY, or the file service.key in the data directory)"
)


class RouteResponse(BaseModel):
    """Where the user's request goes."""

    version: str = Field(description="The model version that serves the user.")
    adapter: str = Field(description="The LoRA adapter to load (model_vN).")
    canary: bool = Field(description="True when the version is the canary of a rollout.")


def make_route_router(router: Router, *, service_key: str) -> APIRouter:
    """An APIRouter answering ``GET /v1/route`` from ``router`` to holders of ``service_key``."""

    def authenticated(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        if not key_matches(authorization, service_key):
            raise HTTPException(
                UNAUTHORIZED, detail=NO_KEY_DETAIL, headers={"WWW-Authenticate": "Bearer"}
            )

    api = APIRouter(prefix="/v1", tags=["routing"], dependencies=[Depends(authenticated)])

    @api.get("/route", response_model=RouteResponse)
    def route(
        user_id: Annotated[
            str,
            Query(
                min_length=1,
                max_length=MAX_ID_CHARS,
                description=f"The id of the user being served (1 to {MAX_ID_CHARS} characters).",
            ),
        ],
        serve: Annotated[
            bool,
            Query(
                description="True when the reply is generated with the returned adapter now: "
                "the user's first exposure is recorded for the canary comparison. False (the "
                "default): a lookup that records nothing."
            ),
        ] = False,
    ) -> RouteResponse:
        decision = router.route(user_id) if serve else router.assign(user_id)
        return RouteResponse(
            version=decision.version, adapter=decision.adapter_name, canary=decision.is_canary
        )

    return api
