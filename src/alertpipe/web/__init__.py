"""The engine's own HTTP surface."""

from __future__ import annotations

from alertpipe.web.app import create_app

__all__ = ["create_app"]
