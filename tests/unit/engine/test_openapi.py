"""Schemathesis against the engine's own OpenAPI document: no 5xx, every answer documented and
shaped as documented, for generated valid and invalid orders."""

from __future__ import annotations

import schemathesis
from engine_support import settings
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from alertpipe.engine import Engine
from alertpipe.store import MemoryStore
from alertpipe.web import create_app

engine = Engine(settings(), store=MemoryStore())
app = create_app(engine)
# /readyz answers 503 here on purpose (the engine is not started); it is tested elsewhere.
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/readyz")


# Every check but positive_data_acceptance: a JSON number with more than six decimal places is
# documented as refused, but JSON Schema cannot state decimal places of binary floats exactly.
EXCLUDED = [positive_data_acceptance]


@schema.parametrize()
@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)
