"""Console settings (env prefix ``LORALOOP_CONSOLE__``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analytics.console.dashboard_config import DashboardSettings
from loraloop.lifecycle import DEFAULT_TAXONOMY, PromotionPolicy
from loraloop.settings import Settings


def _data_dir() -> Path:
    return Settings().data_dir


class ConsoleSettings(BaseSettings):
    """The review console: who may log in, how sessions last, what a label may say."""

    model_config = SettingsConfigDict(
        env_prefix="LORALOOP_CONSOLE__", env_nested_delimiter="__", extra="ignore"
    )

    host: str = Field("127.0.0.1", description="Bind address of `loraloop web`.")
    port: int = Field(
        8600,
        ge=0,
        le=65535,
        description="Port of the review console (`loraloop web`, `loraloop up`; 0 for `up`: "
        "any free port).",
    )
    data_dir: Path = Field(
        default_factory=_data_dir,
        description="Where a generated admin key is written (default: LORALOOP_DATA_DIR).",
    )
    taxonomy: tuple[str, ...] = Field(
        tuple(sorted(DEFAULT_TAXONOMY)), min_length=1, description="Problem types a label may use."
    )
    admin_user: str = Field("admin", min_length=1, description="The bootstrap admin's name.")
    admin_key: SecretStr | None = Field(
        None,
        description="The bootstrap admin's API key; empty: generated once into "
        "<data_dir>/admin.key (mode 0600) and reused.",
    )
    session_secret: SecretStr | None = Field(
        None, description="Signs session cookies; empty: random per process (restart logs out)."
    )
    session_ttl_s: int = Field(8 * 3600, ge=60, description="A login lasts this long.")
    cookie_name: str = Field("loraloop_session", description="Session cookie name.")
    secure_cookie: bool = Field(
        False, description="Send the cookie over HTTPS only (set it behind TLS)."
    )
    page_size: int = Field(50, ge=1, description="Samples per queue page.")
    max_page_size: int = Field(500, ge=1, description="Largest page the API serves.")
    queue_limit: int = Field(200, ge=1, description="Open proposals shown at most.")
    export_limit: int = Field(10_000, ge=1, description="Samples per export at most.")
    transcript_page_size: int = Field(
        200, ge=1, description="Turns per page of a sample's transcript (long conversations page)."
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body accepted (default 1 MiB); larger ones are 413, "
        "refused before they are read.",
    )
    key_bytes: int = Field(32, ge=16, description="Random bytes in a generated API key.")
    scrypt_n: int = Field(2**14, ge=2, description="scrypt cost of new key hashes.")
    scrypt_r: int = Field(8, ge=1, description="scrypt block size.")
    scrypt_p: int = Field(1, ge=1, description="scrypt parallelism.")
    promotion_policy: PromotionPolicy = Field(
        default_factory=PromotionPolicy,
        description="The rules proposals cite; shown next to each proposal.",
    )
    dashboards: DashboardSettings = Field(
        default_factory=DashboardSettings, description="The live dashboards' window and charts."
    )

    @field_validator("taxonomy", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"
