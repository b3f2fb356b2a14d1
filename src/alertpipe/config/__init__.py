"""Configuration: YAML files with ${ENV} interpolation, validated against the spec."""

from __future__ import annotations

from alertpipe.config.loader import config_error_from, interpolate, load_config
from alertpipe.config.model import (
    AppSettings,
    ChannelSettings,
    EngineSettings,
    HttpSettings,
    RetrySettings,
    SourceSettings,
)

__all__ = ["AppSettings", "ChannelSettings", "EngineSettings", "HttpSettings", "RetrySettings",
           "SourceSettings", "config_error_from", "interpolate", "load_config"]
