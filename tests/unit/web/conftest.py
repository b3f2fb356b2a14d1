from __future__ import annotations

from web_support import client, engine

__all__ = ["client", "engine"]
