"""Steps: validate, filter, map, route, and user Python callables."""

from __future__ import annotations

from alertpipe.steps import builtin, python  # noqa: F401  (register the built-in steps)
from alertpipe.steps.base import BUILDERS, BuildContext, Step, StepContext, build_step

__all__ = ["BUILDERS", "BuildContext", "Step", "StepContext", "build_step"]
