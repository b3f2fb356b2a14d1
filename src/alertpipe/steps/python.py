"""A user step written in Python: ``python: package.module:function``.

The function is called with the body (a dict it may change in place or replace) and the
:class:`StepContext`. It returns the new body, or ``None`` to keep the body it changed in place,
or ``False`` to drop the message. Raising ``ValidationFailed`` rejects it with HTTP 422.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from alertpipe.errors import ConfigError
from alertpipe.steps.base import BuildContext, Step, StepContext, register


def import_callable(ref: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (dots after the colon walk attributes)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected 'package.module:function', got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{ref!r} is not callable")
    if inspect.iscoroutinefunction(obj):
        raise ConfigError(f"{ref!r} is async; steps run before the commit and must be plain "
                          "functions")
    return obj  # type: ignore[no-any-return]


class PythonStep:
    kind = "python"

    def __init__(self, ref: str, fn: Callable[..., Any]) -> None:
        self.ref = ref
        self.fn = fn

    def __call__(self, ctx: StepContext) -> None:
        out = self.fn(ctx.body, ctx)
        if out is False:
            ctx.dropped = True
        elif isinstance(out, dict):
            ctx.body = out
        elif out is not None and out is not True:
            raise TypeError(f"step {self.ref} returned {type(out).__name__}; "
                            "expected a dict, None or False")


@register("python")
def _python(arg: Any, bctx: BuildContext) -> Step:
    if not isinstance(arg, str):
        raise ConfigError("expected 'package.module:function'")
    return PythonStep(arg, import_callable(arg))
