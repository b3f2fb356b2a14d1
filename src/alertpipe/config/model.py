"""The configuration spec: engine settings and channels, as pydantic models.

Component-specific settings (a destination's keys) are validated by that component's own
``Config`` model when the engine builds it, so each component's spec lives beside its code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class ApiKeySettings(_Strict):
    """One API key, stored as the SHA-256 hex digest of the key (never the key itself)."""

    id: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    channels: list[str] = ["*"]
    rights: list[Literal["ingest", "read", "admin"]] = ["ingest"]


ROLES = ("viewer", "operator", "admin")  # each may do what the one before it may, and more


class UserSettings(_Strict):
    """A dashboard user. ``password_hash`` comes from ``alertpipe user hash`` (scrypt with a
    random salt); the password itself is never in the config."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: str
    password_hash: str = Field(
        pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$")

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ROLES:
            raise ValueError(f"must be one of {', '.join(ROLES)}")
        return v


class EngineSettings(_Strict):
    store: str = "sqlite:///data/alertpipe.db"
    http: HttpSettings = HttpSettings()
    lease_seconds: float = Field(60.0, gt=0)
    poll_interval_seconds: float = Field(1.0, gt=0)
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    max_wait_seconds: float = Field(30.0, ge=0)
    log_level: str = "INFO"
    api_keys: list[ApiKeySettings] = []
    # The dashboard: its users, the key that signs session cookies (random per process when
    # unset, or from ALERTPIPE_SESSION_SECRET), and the emulator shown in demo mode.
    users: list[UserSettings] = []
    session_secret: SecretStr | None = None
    demo_emulator_url: str | None = None

    @field_validator("users")
    @classmethod
    def _unique_users(cls, v: list[UserSettings]) -> list[UserSettings]:
        names = [u.name for u in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"user names must be unique: {', '.join(dupes)}")
        return v

    @field_validator("session_secret")
    @classmethod
    def _long_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value():
            return None  # ${ALERTPIPE_SESSION_SECRET:-} left empty: as if unset
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. openssl rand -hex 32)")
        return v


class RetrySettings(_Strict):
    """Exponential backoff with full jitter, capped by attempts and by age."""

    max_attempts: int = Field(12, ge=1)
    max_age_seconds: float = Field(24 * 3600, gt=0)
    base_delay_seconds: float = Field(1.0, gt=0)
    max_delay_seconds: float = Field(300.0, gt=0)
    # After an ambiguous failure the request may still land: wait at least this long before
    # the next attempt looks for its effect (Sheets read-back, Twilio lookup).
    ambiguous_min_delay_seconds: float = Field(10.0, ge=0)


class DedupeSettings(_Strict):
    """A repeat of the same business key within the window is answered as a duplicate."""

    key: str = "order_id"
    window_seconds: float = Field(48 * 3600, gt=0)


class CircuitSettings(_Strict):
    failure_threshold: int = Field(5, ge=1)
    reset_seconds: float = Field(30.0, gt=0)


class ChannelSettings(_Strict):
    source: dict[str, Any] = {"type": "http_json", "path": "/orders"}
    dedupe: DedupeSettings | None = DedupeSettings()
    max_pending: int = Field(100_000, ge=1)
    vars: dict[str, Any] = {}
    steps: list[Any] = []
    destinations: dict[str, dict[str, Any]]
    retry: RetrySettings = RetrySettings()
    circuit: CircuitSettings = CircuitSettings()

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
