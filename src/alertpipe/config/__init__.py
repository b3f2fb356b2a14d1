"""Configuration: YAML files with ${ENV} interpolation, validated against the spec."""

from __future__ import annotations

from alertpipe.config.loader import config_error_from, interpolate, load_config
from alertpipe.config.model import (
    ApiKeySettings,
    AppSettings,
    ChannelSettings,
    DedupeSettings,
    EngineSettings,
    HttpSettings,
    RetrySettings,
)

__all__ = [
    "ApiKeySettings",
    "AppSettings",
    "ChannelSettings",
    "DedupeSettings",
    "EngineSettings",
    "HttpSettings",
    "RetrySettings",
    "config_error_from",
    "interpolate",
    "load_config",
]
