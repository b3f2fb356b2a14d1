"""The configuration spec: engine settings and channels, as pydantic models.

Component-specific settings (a destination's keys) are validated by that component's own
``Config`` model when the engine builds it, so each component's spec lives beside its code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class EngineSettings(_Strict):
    store: str = "sqlite:///data/alertpipe.db"
    http: HttpSettings = HttpSettings()
    lease_seconds: float = Field(60.0, gt=0)
    poll_interval_seconds: float = Field(1.0, gt=0)
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    max_wait_seconds: float = Field(30.0, ge=0)
    log_level: str = "INFO"


class RetrySettings(_Strict):
    """Exponential backoff with full jitter, capped by attempts and by age."""

    max_attempts: int = Field(12, ge=1)
    max_age_seconds: float = Field(24 * 3600, gt=0)
    base_delay_seconds: float = Field(1.0, gt=0)
    max_delay_seconds: float = Field(300.0, gt=0)


class SourceSettings(_Strict):
    type: str = "http_json"
    path: str = "/orders"
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    max_depth: int = Field(64, ge=1)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v


class ChannelSettings(_Strict):
    source: SourceSettings = SourceSettings()
    vars: dict[str, Any] = {}
    steps: list[Any] = []
    destinations: dict[str, dict[str, Any]]
    retry: RetrySettings = RetrySettings()

    @field_validator("destinations")
    @classmethod
    def _some(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("a channel needs at least one destination")
        return v


class AppSettings(_Strict):
    engine: EngineSettings = EngineSettings()
    channels: dict[str, ChannelSettings]

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        if not v:
            raise ValueError("at least one channel is required")
        return v
