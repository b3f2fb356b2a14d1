"""The configuration spec: engine settings and channels, as pydantic models.

Component-specific settings (a destination's keys) are validated by that component's own
``Config`` model when the engine builds it, so each component's spec lives beside its code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


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
    # This engine's name in a cluster (leases, logs, leader locks, per-instance views); when
    # unset: ALERTPIPE_INSTANCE_ID, else <hostname>-<pid>. Unique among instances sharing a store.
    instance_id: str | None = Field(None, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]*$")
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


class RetentionSettings(_Strict):
    """Keep messages ``days`` days and their content (body, raw bytes) ``content_days`` days;
    None keeps them for ever. A message with work left is never deleted."""

    days: float | None = Field(None, gt=0)
    content_days: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _order(self) -> RetentionSettings:
        if (self.days is not None and self.content_days is not None
                and self.content_days > self.days):
            raise ValueError("content_days cannot be longer than days (the message goes first)")
        return self


class ChannelSettings(_Strict):
    source: dict[str, Any] = {"type": "http_json", "path": "/orders"}
    dedupe: DedupeSettings | None = DedupeSettings()
    max_pending: int = Field(100_000, ge=1)
    vars: dict[str, Any] = {}
    steps: list[Any] = []
    destinations: dict[str, dict[str, Any]]
    retry: RetrySettings = RetrySettings()
    circuit: CircuitSettings = CircuitSettings()
    retention: RetentionSettings = RetentionSettings()

    @field_validator("destinations")
    @classmethod
    def _some(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("a channel needs at least one destination")
        return v


ALERT_DESTINATION_TYPES = ("twilio_sms", "webhook")
_RULE_KEYS = {"error_rate": {"threshold", "window_minutes", "min_attempts"},
              "backlog_age": {"minutes", "destination"}, "silence": {"minutes"}}


class AlertRule(_Strict):
    """One notification rule (see docs/operations.md). ``error_rate``: failed attempts over all
    attempts in the last ``window_minutes`` above ``threshold`` (with at least ``min_attempts``);
    ``backlog_age``: the oldest undelivered delivery (of ``destination``, or of any) older than
    ``minutes``; ``silence``: no message received on the channel for ``minutes``."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["error_rate", "backlog_age", "silence"]
    channel: str
    destination: str | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    window_minutes: float = Field(5.0, gt=0)
    min_attempts: int = Field(10, ge=1)
    minutes: float | None = Field(None, gt=0)
    notify: list[str] = Field(min_length=1)
    repeat_minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fits_kind(self) -> AlertRule:
        if self.kind == "error_rate" and self.threshold is None:
            raise ValueError("an error_rate rule needs threshold (0 to 1)")
        if self.kind != "error_rate" and self.minutes is None:
            raise ValueError(f"a {self.kind} rule needs minutes")
        mine = _RULE_KEYS[self.kind]
        stray = sorted(k for ks in _RULE_KEYS.values() for k in ks
                       if k not in mine and k in self.model_fields_set)
        if stray:
            raise ValueError(f"{', '.join(stray)} does not apply to a {self.kind} rule")
        return self


class AlertSettings(_Strict):
    """``alerts:``: rules evaluated every ``interval_seconds`` from the store, each notifying
    named ``destinations`` (``twilio_sms`` or ``webhook``, configured as for a channel)."""

    enabled: bool = True
    interval_seconds: float = Field(30.0, gt=0)
    repeat_minutes: float | None = Field(None, gt=0)  # default for rules that set none
    destinations: dict[str, dict[str, Any]] = {}
    rules: list[AlertRule] = []

    @field_validator("destinations")
    @classmethod
    def _types(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, spec in v.items():
            if spec.get("type") not in ALERT_DESTINATION_TYPES:
                raise ValueError(f"alert destination {name!r}: type must be one of "
                                 f"{', '.join(ALERT_DESTINATION_TYPES)}")
        return v

    @model_validator(mode="after")
    def _names(self) -> AlertSettings:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        for rule in self.rules:
            unknown = [n for n in rule.notify if n not in self.destinations]
            if unknown:
                raise ValueError(f"rule {rule.name!r} notifies {', '.join(unknown)}, which "
                                 "alerts.destinations does not define")
        return self


class AppSettings(_Strict):
    engine: EngineSettings = EngineSettings()
    channels: dict[str, ChannelSettings]
    alerts: AlertSettings | None = None

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        if not v:
            raise ValueError("at least one channel is required")
        return v
