from __future__ import annotations

from engine_support import engine

__all__ = ["engine"]
