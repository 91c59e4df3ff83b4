"""Settings of the rollout service: whether it runs and how often it looks.

``LORALOOP_ROLLOUT_SERVICE__*`` (e.g. ``LORALOOP_ROLLOUT_SERVICE__TICK_INTERVAL_S=300``).
The split, the steps and when a step may advance stay in
:class:`trainer.rollout_config.RolloutSettings` (``LORALOOP_ROLLOUT__*``); this class
only decides *whether* and *when* the loop acts (design: Training cycle, steps 6–7).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RolloutServiceSettings(BaseSettings):
    """The loop that starts canaries for gated versions and looks at them on a schedule."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_ROLLOUT_SERVICE__", env_nested_delimiter="__", extra="ignore"
    )

    enabled: bool = Field(
        True,
        description="Run the rollout service inside `loraloop up`; false leaves versions in "
        "`trained` until someone rolls them out by hand.",
    )
    poll_interval_s: float = Field(
        30.0,
        gt=0,
        description="How often the registry is checked for a newly trained, gated version "
        "(and the routing table refreshed).",
    )
    tick_interval_s: float = Field(
        600.0,
        gt=0,
        description="Time between two looks at a running canary (each look compares, records "
        "and may advance, hold or roll back). Solved needs two consecutive looks, so this also "
        "spaces them.",
    )
    retire_superseded: bool = Field(
        True,
        description="Retire a trained version that can no longer be rolled out: a newer one "
        "was trained, or its parent is no longer the active version.",
    )

    adapter_replicas: list[str] = Field(
        default_factory=list,
        description="Base URLs of the serving replicas the adapter controller keeps loaded "
        "(vLLM started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora, or "
        "loraloop gateways), as a JSON list: '[\"http://vllm-0:8000\"]'. Empty: no "
        "controller (the local gateway loads adapters on demand).",
    )
    adapter_replica_api_key: SecretStr | None = Field(
        None, description="Bearer key the replicas want (vLLM's --api-key); empty: none."
    )
    adapter_replica_timeout_s: float = Field(
        60.0, gt=0, description="Seconds a replica may take to load, unload or list adapters."
    )
    adapter_root: Path | None = Field(
        None,
        description="The registry directory as the replicas see it (a shared volume mounted "
        "elsewhere); each version's adapter is <adapter_root>/model_vN. Empty: the "
        "registry's own path.",
    )

    @model_validator(mode="after")
    def _tick_not_faster_than_poll(self) -> RolloutServiceSettings:
        if self.tick_interval_s < self.poll_interval_s:
            msg = (
                f"LORALOOP_ROLLOUT_SERVICE__TICK_INTERVAL_S={self.tick_interval_s} is shorter "
                f"than LORALOOP_ROLLOUT_SERVICE__POLL_INTERVAL_S={self.poll_interval_s}: a look "
                "can only happen at a poll; raise the tick interval or lower the poll interval"
            )
            raise ValueError(msg)
        return self
