"""Runtime settings, read once from the environment (prefix LMREC_); bad values fail fast."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LMREC_", frozen=True)

    # Where models live: s3://bucket[/prefix] in AWS (or on a local S3 endpoint through
    # AWS_ENDPOINT_URL), or file:///path for the embedded default.
    store_uri: str = Field(default="", description="model store root; empty = no model")
    model_name: str = Field(default="lmrec", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    refresh_seconds: float = Field(default=60.0, ge=1.0, le=86400.0)
    cache_dir: str = "/tmp"  # the only writable path in Lambda
    events_table: str = ""  # DynamoDB table for real-time events; empty = events disabled
    events_ttl_days: int = Field(default=90, ge=1, le=3650)
    events_per_user: int = Field(default=50, ge=1, le=1000)  # newest events merged per request
    max_body_bytes: int = Field(default=262_144, ge=1024, le=6_291_456)  # Lambda: 6 MB
    metrics_namespace: str = "lmrec"

    @field_validator("store_uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith(("s3://", "file://")):
            raise ValueError("LMREC_STORE_URI must start with s3:// or file://")
        return value

    def pointer_uri(self) -> str:
        return f"{self.store_uri}/models/{self.model_name}/production.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
