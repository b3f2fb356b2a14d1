"""Load ``alertpipe.yaml``: read YAML, interpolate ``${ENV}`` references, validate the spec.

- ``${NAME}`` must be set; every unset one is reported at once, each with the key needing it.
- ``${NAME:-default}`` falls back to ``default`` when NAME is unset or empty.
- ``$$`` is a literal ``$``.

Substituted values are strings; the spec's types convert them (``port: ${PORT}`` becomes an
int), and channel ``vars`` that look like numbers become ``Decimal``. An optional ``.env`` file
beside the config is read first and never overrides variables already set. Every error names the
file, the channel and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values
from pydantic import ValidationError

from alertpipe.config.model import AppSettings
from alertpipe.errors import ConfigError

_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _locate(path: tuple[str | int, ...]) -> tuple[str | None, str | None]:
    """Split a key path into (channel, key-within-channel) for error messages."""
    parts = [str(p) for p in path]
    if len(parts) >= 2 and parts[0] == "channels":
        return parts[1], ".".join(parts[2:]) or None
    return None, ".".join(parts) or None


def interpolate(node: Any, env: Mapping[str, str], file: str,
                path: tuple[str | int, ...] = ()) -> Any:
    """Replace ``${VAR}`` references in every string of a parsed YAML tree (``$$`` is a literal
    ``$``). Every unset variable is reported in one error, each with the key that needs it."""
    missing: list[tuple[str, tuple[str | int, ...]]] = []
    out = _walk(node, env, path, missing)
    if missing:
        parts = []
        for name, where in missing:
            channel, key = _locate(where)
            loc = f"channel {channel!r} key {key!r}" if channel else f"key {key!r}"
            parts.append(f"{name} (needed by {loc})")
        noun = "variable is" if len(missing) == 1 else "variables are"
        raise ConfigError(f"environment {noun} not set: " + ", ".join(parts), file=file)
    return out


def _walk(node: Any, env: Mapping[str, str], path: tuple[str | int, ...],
          missing: list[tuple[str, tuple[str | int, ...]]]) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, env, (*path, str(k)), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env, (*path, i), missing) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append((name, path))
                return ""
            return default
        return value

    return _REF.sub(sub, node)


def read_env(config_path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment over the values of an optional ``.env`` beside the config."""
    env: dict[str, str] = {}
    dotenv = config_path.parent / ".env"
    if dotenv.is_file():
        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AppSettings:
    """Read, interpolate and validate a config file."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", file=file) from exc
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}: {getattr(exc, 'problem', exc)}",
                          file=file) from exc
    if not isinstance(tree, dict):
        raise ConfigError("the top level must be a mapping with a 'channels' key", file=file)
    tree = interpolate(tree, read_env(path, environ), file)
    try:
        return AppSettings.model_validate(tree)
    except ValidationError as exc:
        raise config_error_from(exc, file=file) from None


def config_error_from(exc: ValidationError, *, file: str | None = None,
                      prefix: tuple[str | int, ...] = ()) -> ConfigError:
    """Turn pydantic's first error into a ConfigError naming file, channel and key."""
    err = exc.errors(include_url=False)[0]
    channel, key = _locate((*prefix, *err["loc"]))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(msg, file=file, channel=channel, key=key)
