"""The OpenAPI document and the topology describe the same routes, and the limits it states are the code's."""

from __future__ import annotations

from pathlib import Path

import yaml

from domain.ledger import EVENT_TYPES
from eventlog.topology import ROUTES
from handlers.append_request import MAX_BODY_BYTES

DOCUMENT = yaml.safe_load((Path(__file__).parent.parent / "api" / "openapi.yaml").read_text())


def test_every_route_is_documented_and_every_documented_operation_is_served() -> None:
    documented = {
        (method.upper(), path, operation["operationId"])
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "delete")
    }
    served = {(r.method, r.resource, r.operation_id) for r in ROUTES}
    assert documented == served


def test_documented_event_types_and_body_limit_match_the_code() -> None:
    schema = DOCUMENT["components"]["schemas"]["AppendRequest"]
    assert sorted(schema["properties"]["type"]["enum"]) == sorted(EVENT_TYPES)
    assert str(MAX_BODY_BYTES) in DOCUMENT["info"]["description"]
